"""The durable outbox: retries, dead letters, ordering, and restarts."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from channels.fake import FakeChannel, FakeRecorder
from hub.errors import ChannelSendError
from hub.jobs.queue import backoff
from tests.conftest import Hub, make_settings, start_hub, wait_for


def test_backoff_is_exponential_with_full_jitter() -> None:
    rng = random.Random(7)
    samples = [backoff(n, base=1.0, cap=60.0, rng=rng) for n in range(1, 12) for _ in range(50)]
    assert all(0 <= s <= 60 for s in samples)
    first = [backoff(1, base=1.0, cap=60.0, rng=rng) for _ in range(200)]
    tenth = [backoff(10, base=1.0, cap=60.0, rng=rng) for _ in range(200)]
    assert max(first) <= 1.0 and max(tenth) > 30  # grows, then caps
    assert len(set(first)) > 150  # jittered, not synchronised


async def _open(hub: Hub, sender: str) -> int:
    r = await hub.inbound({"from": sender, "text": "hi", "id": f"{sender}-in"})
    return (await hub.api("GET", f"/api/v1/messages/{r['received'][0]['message_id']}"))["conversation_id"]


async def _message(hub: Hub, message_id: int) -> dict:
    return await hub.api("GET", f"/api/v1/messages/{message_id}")


@pytest.mark.asyncio
async def test_outbox_survives_restart_and_delivers_each_exactly_once(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path)
    recorder = FakeRecorder()
    # First life: the channel is down (every attempt fails, retryably) when replies are queued.
    recorder.fail_next = [ChannelSendError("provider down", retryable=True, retry_after=1.0) for _ in range(100)]
    first = await start_hub(settings, channels={"fake": FakeChannel(settings, recorder)})
    try:
        conversation_id = await _open(first, "restart-visitor")
        replies = [
            (
                await first.api(
                    "POST",
                    f"/api/v1/conversations/{conversation_id}/messages",
                    role="agent",
                    json={"text": f"reply {i}"},
                    expect=201,
                )
            )["id"]
            for i in range(3)
        ]
        await wait_for(lambda: len(recorder.fail_next) < 100)  # the worker tried, and failed
        assert recorder.sent == []
    finally:
        await first.client.close()  # graceful shutdown with deliveries still pending

    # Second life: the provider is back; pending work resumes after the restart
    # once its backoff is due, with nothing re-queued by hand.
    recorder.fail_next.clear()
    second = await start_hub(settings, channels={"fake": FakeChannel(settings, recorder)})
    try:
        await wait_for(lambda: len(recorder.sent) >= 3, timeout=10)
        for message_id in replies:
            await wait_for(lambda m=message_id: _delivered(second, m), timeout=5)
        await asyncio.sleep(0.3)  # nothing else arrives later either
        counts = recorder.counts()
        assert sorted(counts.values()) == [1, 1, 1], counts
        assert [m.text for m in recorder.sent] == ["reply 0", "reply 1", "reply 2"]
    finally:
        await second.client.close()


async def _delivered(hub: Hub, message_id: int) -> bool:
    return (await _message(hub, message_id))["delivery_status"] == "delivered"


@pytest.mark.asyncio
async def test_crash_while_sending_is_resent_with_same_idempotency_key(sqlite_url: str, tmp_path: Path) -> None:
    """A row left 'sending' by a crash is re-sent after its lease expires, same key."""
    import sqlalchemy as sa

    from hub.events import utcnow
    from hub.storage.schema import outbox

    settings = make_settings(sqlite_url, tmp_path, outbox_lease_seconds=0.3)
    recorder = FakeRecorder()
    hub = await start_hub(settings, channels={"fake": FakeChannel(settings, recorder)})
    try:
        conversation_id = await _open(hub, "crash-visitor")
        # Simulate the crash: a claimed row whose worker died before recording the result.
        from hub.conversations import transactions as tx

        queued = await hub.db.write(
            tx.queue_outbound,
            conversation_id,
            "survivor",
            author_kind=__import__("hub.models", fromlist=["AuthorKind"]).AuthorKind.BOT,
            to="crash-visitor",
            idempotency_key="crash-key",
        )
        await hub.db.write(
            lambda c: c.execute(
                sa.update(outbox).where(outbox.c.id == queued.outbox_id).values(status="sending", lease_until=utcnow())
            )
        )
        await wait_for(lambda: [m.idempotency_key for m in recorder.sent] == ["crash-key"], timeout=5)
        await wait_for(lambda: _delivered(hub, queued.message.id))
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_retryable_failures_then_success(hub: Hub) -> None:
    recorder = hub.channel("fake").recorder
    recorder.fail_next = [
        ChannelSendError("HTTP 503", retryable=True),
        ChannelSendError("HTTP 429", retryable=True, retry_after=0.05),
    ]
    conversation_id = await _open(hub, "retry-visitor")
    reply = await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        role="agent",
        json={"text": "eventually"},
        expect=201,
    )
    await wait_for(lambda: _delivered(hub, reply["id"]), timeout=10)
    assert [m.text for m in recorder.sent] == ["eventually"]
    entries = await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox", "status": "delivered"})
    [entry] = [e for e in entries["items"] if e["message_id"] == reply["id"]]
    assert entry["attempts"] == 3


@pytest.mark.asyncio
async def test_permanent_failure_is_dead_lettered_and_can_be_retried(hub: Hub) -> None:
    recorder = hub.channel("fake").recorder
    recorder.fail_next = [ChannelSendError("unknown recipient", retryable=False)]
    conversation_id = await _open(hub, "dead-visitor")
    reply = await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/messages", role="agent", json={"text": "lost?"}, expect=201
    )
    await wait_for(lambda: _status(hub, reply["id"], "failed"))
    dead = await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox", "status": "dead"})
    [entry] = dead["items"]
    assert entry["last_error"] == "unknown recipient" and dead["counts"]["dead"] == 1
    await hub.api("POST", f"/api/v1/jobs/outbox/{entry['id']}/retry")
    await wait_for(lambda: _delivered(hub, reply["id"]))
    assert [m.text for m in recorder.sent] == ["lost?"]


async def _status(hub: Hub, message_id: int, wanted: str) -> bool:
    return (await _message(hub, message_id))["delivery_status"] == wanted


@pytest.mark.asyncio
async def test_too_many_attempts_dead_letters(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path, outbox_max_attempts=3)
    recorder = FakeRecorder(fail_next=[ChannelSendError("timeout", retryable=True) for _ in range(10)])
    hub = await start_hub(settings, channels={"fake": FakeChannel(settings, recorder)})
    try:
        conversation_id = await _open(hub, "tired-visitor")
        reply = await hub.api(
            "POST", f"/api/v1/conversations/{conversation_id}/messages", role="agent", json={"text": "x"}, expect=201
        )
        await wait_for(lambda: _status(hub, reply["id"], "failed"), timeout=10)
        assert len(recorder.fail_next) == 7  # exactly three attempts
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_order_is_kept_within_a_conversation(hub: Hub) -> None:
    recorder = hub.channel("fake").recorder
    recorder.fail_next = [ChannelSendError("blip", retryable=True)]  # the first reply fails once
    conversation_id = await _open(hub, "order-visitor")
    for i in range(5):
        await hub.api(
            "POST",
            f"/api/v1/conversations/{conversation_id}/messages",
            role="agent",
            json={"text": f"part {i}"},
            expect=201,
        )
    await wait_for(lambda: len(recorder.sent) == 5, timeout=10)
    assert [m.text for m in recorder.sent] == [f"part {i}" for i in range(5)]
