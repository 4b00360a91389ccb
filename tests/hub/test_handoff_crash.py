"""A hub killed in the middle of a bot handoff loses nothing and doubles nothing.

A real ``hub serve`` process, the bot answered by a loopback Rasa stand-in
and Slack by the fake Slack API: an urgent message arrives, the bot hands
off, and the process SIGKILLs itself right after the handoff's transaction
commits, before any event is published (``HUB_CRASH_AT``). Restarted on the
same database, the hub has exactly one ticket and posts its agent card
exactly once: the ticket and its card job were committed with the handoff,
and nothing waits on a bus event that died with the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.fake import sign
from tests.conftest import free_port, wait_for
from tests.fakes.rasa import FakeRasa
from tests.fakes.slack_api import FakeSlackApi

ROOT = Path(__file__).resolve().parents[2]
SECRET = "crash-test-secret"


def _env(tmp_path: Path, port: int, rasa_url: str, slack: FakeSlackApi, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "HUB_PORT": str(port),
        "HUB_HOST": "127.0.0.1",
        "HUB_CHANNELS": "fake,slack",
        "HUB_FAKE_SECRET": SECRET,
        "HUB_BOT": "rasa",
        "HUB_RASA_URL": rasa_url,
        "HUB_KB_ENABLED": "false",
        "HUB_SLACK_BOT_TOKEN": "xoxb-test-token",
        "HUB_SLACK_SIGNING_SECRET": "slack-secret",
        "HUB_SLACK_API_URL": slack.base_url,
        "HUB_SLACK_DEFAULT_CHANNEL": "CSUPPORT",
        "HUB_SLACK_URGENT_CHANNEL": "CURGENT",
        "HUB_SLACK_JOBS_POLL_INTERVAL": "0.05",
        **extra,
    }


def _popen(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hub", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = _popen(env, log)
    url = f"http://127.0.0.1:{env['HUB_PORT']}/readyz"

    async def up() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(up, timeout=60)
    return process


async def _stop(hub: subprocess.Popen[bytes] | None, rasa: FakeRasa, slack: FakeSlackApi) -> None:
    """The hub (SIGTERM, then SIGKILL after 20 s) and the fake vendors."""
    if hub is not None and hub.poll() is None:
        hub.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(hub.wait, 20)
        except subprocess.TimeoutExpired:
            hub.kill()
    await rasa.stop()
    await slack.close()


def _rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_sigkill_right_after_the_handoff_commit_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rasa, slack = FakeRasa(), await FakeSlackApi().start()
    rasa_url = await rasa.start()
    port, log, db = free_port(), tmp_path / "hub.log", tmp_path / "hub.db"
    hub: subprocess.Popen[bytes] | None = None
    try:
        hub = await _serve(_env(tmp_path, port, rasa_url, slack, HUB_CRASH_AT="handoff-committed"), log)
        raw = json.dumps({"from": "crash-visitor", "text": "my account was hacked", "id": "crash-1"}).encode()
        async with aiohttp.ClientSession() as http:
            headers = {**sign(SECRET, raw), "Content-Type": "application/json"}
            async with http.post(f"http://127.0.0.1:{port}/channels/fake/webhook", data=raw, headers=headers) as r:
                assert r.status == 200, await r.text()
        code = await asyncio.to_thread(hub.wait, 30)
        assert code == -signal.SIGKILL, log.read_text()[-3000:]  # it died at the crash point
        assert _rows(db, "SELECT count(*) FROM tickets") == [(1,)]
        assert slack.of("chat.postMessage") == []  # killed before the card went out

        hub = await _serve(_env(tmp_path, port, rasa_url, slack), log)  # same database, no crash point

        def cards() -> list:
            return [c for c in slack.of("chat.postMessage") if c.args.get("blocks")]

        await wait_for(lambda: cards(), timeout=20)
        await asyncio.sleep(1.5)  # time for a second post, were there one to come
        assert len(cards()) == 1 and cards()[0].args["channel"] == "CURGENT"
        [(ticket_id, priority, status, slack_ts)] = _rows(db, "SELECT id, priority, status, slack_ts FROM tickets")
        assert (priority, status) == ("urgent", "open") and slack_ts
        [(handler,)] = _rows(db, "SELECT handler FROM conversations")
        assert handler == "human"
        assert f"#{ticket_id}" in json.dumps(cards()[0].args) or str(ticket_id) in json.dumps(cards()[0].args)
    finally:
        await _stop(hub, rasa, slack)


@pytest.mark.asyncio
async def test_sigkill_after_the_card_went_up_adopts_it_instead_of_posting_again(tmp_path: Path) -> None:
    """Killed between Slack's answer to chat.postMessage and storing the
    card's ts: the post job, run again once its lease runs out, finds the card
    at Slack by its message metadata and adopts it. One card, its ts stored."""
    rasa, slack = FakeRasa(), await FakeSlackApi().start()
    rasa_url = await rasa.start()
    port, log, db = free_port(), tmp_path / "hub.log", tmp_path / "hub.db"
    lease = {"HUB_SLACK_JOBS_LEASE_SECONDS": "1"}  # the killed run's claim expires soon
    hub: subprocess.Popen[bytes] | None = None
    try:
        hub = await _serve(_env(tmp_path, port, rasa_url, slack, HUB_CRASH_AT="slack-card-posted", **lease), log)
        raw = json.dumps({"from": "card-visitor", "text": "my account was hacked", "id": "card-1"}).encode()
        async with aiohttp.ClientSession() as http:
            headers = {**sign(SECRET, raw), "Content-Type": "application/json"}
            async with http.post(f"http://127.0.0.1:{port}/channels/fake/webhook", data=raw, headers=headers) as r:
                assert r.status == 200, await r.text()
        code = await asyncio.to_thread(hub.wait, 30)
        assert code == -signal.SIGKILL, log.read_text()[-3000:]

        def cards() -> list[tuple[str, str]]:
            return [key for key, m in slack.messages.items() if m.get("blocks") and not m.get("thread_ts")]

        [(channel, ts)] = cards()  # up at Slack...
        [(ticket_id, stored)] = _rows(db, "SELECT id, slack_ts FROM tickets")
        assert stored is None  # ...and not known to the hub
        # Slack gives a message's metadata back only to who asks for it.
        assert "metadata" not in slack.api_conversations_history({"channel": channel})["messages"][0]
        listed = slack.api_conversations_history({"channel": channel, "include_all_metadata": "true"})
        assert listed["messages"][0]["metadata"] == {
            "event_type": "servicehub_ticket",
            "event_payload": {"ticket_id": ticket_id},
        }

        hub = await _serve(_env(tmp_path, port, rasa_url, slack, **lease), log)  # same database, no crash point

        def post_job_done() -> bool:
            return _rows(db, "SELECT status FROM slack_jobs WHERE kind = 'post_ticket'") == [("done",)]

        await wait_for(post_job_done, timeout=30)
        assert cards() == [(channel, ts)]
        assert _rows(db, "SELECT slack_channel, slack_ts FROM tickets") == [(channel, ts)]
        assert len([c for c in slack.of("chat.postMessage") if c.args.get("blocks")]) == 1
        [lookup, *_] = slack.of("conversations.history")
        assert lookup.args["include_all_metadata"] == "true" and float(lookup.args["oldest"]) < float(ts)
        adopted = slack.of("chat.update")[0]  # the card as the ticket is now
        assert (adopted.args["channel"], adopted.args["ts"]) == (channel, ts) and adopted.args["blocks"]
    finally:
        await _stop(hub, rasa, slack)


async def _post(port: int, sender: str, text: str, message_id: str) -> None:
    raw = json.dumps({"from": sender, "text": text, "id": message_id}).encode()
    async with aiohttp.ClientSession() as http:
        headers = {**sign(SECRET, raw), "Content-Type": "application/json"}
        async with http.post(f"http://127.0.0.1:{port}/channels/fake/webhook", data=raw, headers=headers) as r:
            assert r.status == 200, await r.text()


@pytest.mark.asyncio
async def test_sigkill_after_a_thread_message_went_up_does_not_post_it_again(tmp_path: Path) -> None:
    """Killed between Slack's answer to a thread message's chat.postMessage
    and its job marked done: the job, run again once its lease runs out, finds
    its message in the card's thread by its metadata and posts nothing."""
    rasa, slack = FakeRasa(), await FakeSlackApi().start()
    rasa_url = await rasa.start()
    port, log, db = free_port(), tmp_path / "hub.log", tmp_path / "hub.db"
    lease = {"HUB_SLACK_JOBS_LEASE_SECONDS": "1"}
    hub: subprocess.Popen[bytes] | None = None

    def card() -> tuple[str, str] | None:
        found = [key for key, m in slack.messages.items() if m.get("blocks") and not m.get("thread_ts")]
        return found[0] if found else None

    def thread_texts() -> list[str]:
        parent = card()
        return [
            str(m["text"])
            for (c, _), m in sorted(slack.messages.items(), key=lambda item: float(item[1]["ts"]))
            if parent and c == parent[0] and m.get("thread_ts") == parent[1] and m.get("bot_id")
        ]

    try:
        hub = await _serve(_env(tmp_path, port, rasa_url, slack, HUB_CRASH_AT="slack-thread-posted", **lease), log)
        await _post(port, "thread-visitor", "my account was hacked", "thread-1")
        await wait_for(lambda: card() is not None or hub.poll() is not None, timeout=30)
        if hub.poll() is None:  # nothing mirrored into the thread yet: the customer writes again
            await _post(port, "thread-visitor", "is anyone there? the hacker changed my email", "thread-2")
        code = await asyncio.to_thread(hub.wait, 30)
        assert code == -signal.SIGKILL, log.read_text()[-3000:]
        before = thread_texts()
        assert len(before) == 1  # up at Slack...
        listed = slack.api_conversations_replies({"channel": card()[0], "ts": card()[1], "include_all_metadata": "1"})
        metadata = listed["messages"][-1]["metadata"]
        assert metadata["event_type"] == "servicehub_thread_post"
        job_id = metadata["event_payload"]["job_id"]
        # ...and its job claimed, never marked done
        assert _rows(db, f"SELECT kind, status FROM slack_jobs WHERE id = {int(job_id)}") == [("thread", "sending")]
        assert (
            "metadata" not in slack.api_conversations_replies({"channel": card()[0], "ts": card()[1]})["messages"][-1]
        )

        hub = await _serve(_env(tmp_path, port, rasa_url, slack, **lease), log)  # same database, no crash point

        def thread_jobs_done() -> bool:
            return {s for (s,) in _rows(db, "SELECT status FROM slack_jobs WHERE kind = 'thread'")} == {"done"}

        await wait_for(thread_jobs_done, timeout=30)
        await asyncio.sleep(1.0)  # time for a second post, were there one to come
        after = thread_texts()
        assert after[: len(before)] == before and len(after) == len(set(after))
        assert len(after) == len(_rows(db, "SELECT id FROM slack_jobs WHERE kind = 'thread'"))
        [lookup, *_] = slack.of("conversations.replies")
        assert lookup.args["include_all_metadata"] == "true" and lookup.args["ts"] == card()[1]
    finally:
        await _stop(hub, rasa, slack)


@pytest.mark.asyncio
async def test_with_the_bus_down_no_work_is_lost(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event lost (a Redis blip with HUB_REDIS_URL, or a crash right
    after a commit): tickets still open, follow their conversations, count
    first responses, and every Slack job is still queued."""
    import sqlalchemy as sa

    from hub.storage.schema import slack_jobs, tickets
    from tests.channels.test_slack import slack_settings
    from tests.conftest import start_hub

    slack = await FakeSlackApi().start()
    hub = await start_hub(slack_settings(database_url, tmp_path, slack))
    try:
        lost: list[object] = []

        async def blip(event: object) -> None:
            lost.append(event)

        monkeypatch.setattr(hub.service.bus, "publish", blip)
        received = await hub.inbound({"from": "blip", "text": "hello", "id": "blip-1", "name": "Ada"})
        message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
        cid = message["conversation_id"]
        ticket = await hub.tickets.open(cid, priority="high", reason="bot could not answer", source="bot")
        await hub.api(
            "POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "On it."}, expect=201
        )
        await hub.inbound({"from": "blip", "text": "thanks", "id": "blip-2"})
        await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"status": "resolved"})
        assert lost  # the bus saw nothing of it

        def state(conn: sa.Connection) -> tuple:
            row = conn.execute(sa.select(tickets).where(tickets.c.id == ticket.id)).one()
            kinds = [r.kind for r in conn.execute(sa.select(slack_jobs.c.kind).order_by(slack_jobs.c.id))]
            return row, kinds

        row, kinds = await hub.db.read(state)
        assert row.status == "resolved" and row.first_response_at is not None
        assert kinds.count("post_ticket") == 1 and kinds.count("thread") >= 2 and "update_ticket" in kinds
        conversation = await hub.api("GET", f"/api/v1/conversations/{cid}")
        assert conversation["status"] == "resolved"
    finally:
        await hub.client.close()
        await slack.close()


@pytest.mark.asyncio
async def test_concurrent_handoffs_open_one_ticket_at_the_most_urgent_priority(hub: Any) -> None:
    """The bot, a keyword rule and an agent hand the same conversation off at
    once (two instances on PostgreSQL race the insert): one ticket, and the
    most urgent priority asked wins."""
    received = await hub.inbound({"from": "racer", "text": "hello", "id": "race-1"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    cid = message["conversation_id"]
    opened = await asyncio.gather(
        *(hub.tickets.open(cid, priority=p, source="bot") for p in ("low", "normal", "urgent", "high", "normal"))
    )
    assert len({t.id for t in opened}) == 1
    [ticket] = (await hub.api("GET", "/api/v1/tickets"))["items"]
    assert ticket["priority"] == "urgent"
    assert (await hub.api("GET", f"/api/v1/conversations/{cid}"))["priority"] == "urgent"
