"""After an erasure nothing of the customer remains: not in any table, not in
the Slack cards and threads the hub posted, not in Rasa's tracker, not in the log.

A customer talks to the bot (a Rasa stand-in that keeps a tracker), asks for
a person, the ticket's card goes up in the fake Slack with their messages in
its thread, and an agent replies. The contact is erased through the API:
the Slack card and the hub's thread messages are deleted through the durable
Slack queue, the tracker is emptied through the bot queue, every table is
scanned for their name, address and words, and so is the INFO log.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.bot.bridge import BotBridge
from hub.conversations.search import search_conversations
from hub.keys import BOT_BRIDGE, METRICS, SLACK_DESK
from hub.slack.jobs import SlackJobWorker
from hub.storage.schema import metadata
from tests.channels.test_slack import slack_settings
from tests.conftest import Hub, make_settings, start_hub, wait_for
from tests.fakes.rasa import FakeRasa
from tests.fakes.slack_api import FakeSlackApi

NAME, ADDRESS = "Zebulon Quist", "zq-visitor-4411"
WORDS = ("my parcel with the walnut clock never came", "please get me a person about the walnut clock")


@pytest.mark.asyncio
async def test_erasure_leaves_nothing_in_tables_slack_rasa_or_logs(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rasa, slack = FakeRasa(), await FakeSlackApi().start()
    await rasa.start()
    settings = slack_settings(
        database_url, tmp_path, slack, bot="rasa", rasa_url=rasa.url, rasa_timeout=0.5, rasa_ready_wait=1.0
    )
    hub = await start_hub(settings, knowledge_base=None)
    try:
        first = await hub.inbound({"from": ADDRESS, "name": NAME, "text": WORDS[0], "id": "z1"})
        message = await hub.api("GET", f"/api/v1/messages/{first['received'][0]['message_id']}")
        cid, contact = message["conversation_id"], message["contact_id"]
        await hub.inbound({"from": ADDRESS, "text": WORDS[1], "id": "z2"})  # "person": the bot hands off

        async def card() -> dict | None:
            items = (await hub.api("GET", "/api/v1/tickets"))["items"]
            return items[0] if items and items[0]["slack_ts"] else None

        ticket = await wait_for(card)
        await hub.inbound({"from": ADDRESS, "text": "hello? still waiting on the walnut clock", "id": "z3"})
        await hub.api(
            "POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "Hi Zebulon"}, expect=201
        )

        def in_slack() -> list[str]:
            texts = [f"{m.get('text')} {m.get('blocks')}" for m in slack.messages.values()]
            return [t for t in texts if any(n in t for n in (NAME, "Zebulon", "walnut clock"))]

        await wait_for(lambda: len(in_slack()) >= 3)  # the card and the mirrored thread messages
        assert any("walnut clock" in t for t in rasa.trackers[str(cid)])

        result = await hub.api("DELETE", f"/api/v1/contacts/{contact}")
        assert result["deleted"]["slack_cards"] == 1 and result["deleted"]["bot_trackers"] == 1

        await wait_for(lambda: not in_slack(), timeout=20)
        assert (ticket["slack_channel"], ticket["slack_ts"]) not in slack.messages
        await wait_for(lambda: str(cid) in rasa.forgotten, timeout=20)
        assert rasa.trackers[str(cid)] == []

        needles = (NAME, "Zebulon", ADDRESS, "walnut clock")

        def scan(conn: sa.Connection) -> list[str]:
            hits = []
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    text = " ".join(str(v) for v in row)
                    hits += [f"{table.name}: {n}" for n in needles if n in text]
            return hits

        assert await hub.db.read(scan) == []
        # Nor in the search index: no match, and (SQLite) not a token left in
        # the FTS5 segments, where a deletion first lands as a tombstone.
        assert await hub.db.read(search_conversations, "walnut clock") == []
        assert await hub.db.read(fts_segment_hits, [n.casefold() for n in needles]) == []
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert not [line for line in logged if any(n in line for n in needles)]
    finally:
        await hub.client.close()
        await rasa.stop()
        await slack.close()


def fts_segment_hits(conn: sa.Connection, needles: list[str]) -> list[str]:
    """The needles (single words) found in the raw pages of the SQLite FTS5
    index (its shadow tables); PostgreSQL keeps its vector in the row."""
    if conn.dialect.name != "sqlite":
        return []
    words = [w.encode() for n in needles for w in n.split()]
    hits = []
    for table in ("messages_fts_data", "messages_fts_idx"):
        for row in conn.exec_driver_sql(f"SELECT * FROM {table}"):
            raw = b" ".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
            hits += [f"{table}: {w.decode()}" for w in words if w in raw]
    return hits


# --- what is on its way while the erasure commits --------------------------------------


async def _customer(hub: Hub, external_id: str) -> tuple[int, int]:
    """A message from the customer: (conversation id, contact id)."""
    first = await hub.inbound({"from": ADDRESS, "name": NAME, "text": WORDS[0], "id": external_id})
    message = await hub.api("GET", f"/api/v1/messages/{first['received'][0]['message_id']}")
    return message["conversation_id"], message["contact_id"]


def _about_them(slack: FakeSlackApi) -> list[dict]:
    """Messages in the fake workspace naming the customer or quoting them."""
    return [
        m
        for m in slack.messages.values()
        if any(n in f"{m.get('text')} {m.get('blocks')}" for n in (NAME, "Zebulon", "walnut clock"))
    ]


@pytest.mark.asyncio
async def test_a_card_on_its_way_to_slack_when_the_contact_is_erased_is_deleted(
    database_url: str, tmp_path: Path
) -> None:
    """The erasure finds no card to delete (none posted yet); the card, built
    before the erasure, goes up after it: the hub deletes it when it learns
    where it went (single instance: the card's job holds the Slack worker)."""
    slack = await FakeSlackApi().start()
    hub = await start_hub(slack_settings(database_url, tmp_path, slack), knowledge_base=None)
    try:
        cid, contact = await _customer(hub, "c1")
        gate = slack.hold("chat.postMessage")
        await hub.api("POST", f"/api/v1/conversations/{cid}/handoff", role="agent", json={}, expect=201)
        await wait_for(lambda: slack.held.get("chat.postMessage"))
        result = await hub.api("DELETE", f"/api/v1/contacts/{contact}")
        assert result["deleted"]["slack_cards"] == 0  # nothing in Slack yet, as far as the hub knows
        gate.set()
        await wait_for(lambda: slack.of("chat.delete"), timeout=10)
        assert any(NAME in str(call.args) for call in slack.of("chat.postMessage"))  # the card named them
        await wait_for(lambda: not _about_them(slack))
        assert slack.messages == {}
        jobs = await hub.api("GET", "/api/v1/jobs", params={"queue": "slack"})
        assert NAME not in str(jobs) and ADDRESS not in str(jobs)
    finally:
        await hub.client.close()
        await slack.close()


@pytest.mark.asyncio
async def test_a_thread_message_posted_after_another_instance_erased_the_card_is_deleted(
    database_url: str, tmp_path: Path
) -> None:
    """Two instances: one is posting the customer's message into the card's
    thread when the contact is erased; the other runs the erasure's job (the
    thread as it is then, and the card) at once. The late message goes too."""
    slack = await FakeSlackApi().start()
    hub = await start_hub(slack_settings(database_url, tmp_path, slack), knowledge_base=None)
    try:
        cid, contact = await _customer(hub, "t1")
        await hub.api("POST", f"/api/v1/conversations/{cid}/handoff", role="agent", json={}, expect=201)

        async def card() -> dict | None:
            items = (await hub.api("GET", "/api/v1/tickets"))["items"]
            return items[0] if items and items[0]["slack_ts"] else None

        await wait_for(card)
        gate = slack.hold("chat.postMessage")
        await hub.inbound({"from": ADDRESS, "text": "hello? still waiting on the walnut clock", "id": "t2"})
        await wait_for(lambda: slack.held.get("chat.postMessage"))
        await hub.api("DELETE", f"/api/v1/contacts/{contact}")
        desk = hub.app[SLACK_DESK]
        other_instance = SlackJobWorker(hub.db, desk.execute)
        assert await other_instance.run_once() == 1  # the erasure's job: the card and its thread, deleted
        assert not _about_them(slack)
        gate.set()
        await wait_for(lambda: len(slack.of("chat.delete")) >= 2, timeout=10)
        await wait_for(lambda: not _about_them(slack))
    finally:
        await hub.client.close()
        await slack.close()


@pytest.mark.asyncio
async def test_a_message_on_its_way_to_rasa_when_the_contact_is_erased_is_forgotten_too(
    database_url: str, tmp_path: Path
) -> None:
    """Two instances: one is sending the customer's message to Rasa when the
    contact is erased; the other empties the tracker at once. Rasa then
    stores the late message, and the first instance empties it again."""
    rasa = FakeRasa()
    await rasa.start()
    settings = make_settings(
        database_url, tmp_path, bot="rasa", rasa_url=rasa.url, rasa_timeout=10.0, rasa_ready_wait=1.0
    )
    hub = await start_hub(settings, knowledge_base=None)
    try:
        cid, contact = await _customer(hub, "r1")
        await wait_for(lambda: rasa.trackers.get(str(cid)))
        rasa.gate = asyncio.Event()
        await hub.inbound({"from": ADDRESS, "text": "the walnut clock is still missing", "id": "r2"})
        await wait_for(lambda: rasa.held == 1)
        await hub.api("DELETE", f"/api/v1/contacts/{contact}")
        bridge = hub.app[BOT_BRIDGE]
        other_instance = BotBridge(hub.service, hub.db, bridge.rasa, hub.app[METRICS])
        assert await other_instance.run_once() == 1  # the erasure's forget job
        assert rasa.forgotten == [str(cid)] and rasa.trackers[str(cid)] == []
        rasa.gate.set()
        await wait_for(lambda: rasa.forgotten.count(str(cid)) == 2, timeout=10)
        assert rasa.trackers[str(cid)] == []
    finally:
        await hub.client.close()
        await rasa.stop()


@pytest.mark.asyncio
async def test_a_forget_rasa_keeps_refusing_goes_dead_and_an_admin_requeues_it(
    database_url: str, tmp_path: Path
) -> None:
    rasa = FakeRasa()
    await rasa.start()
    settings = make_settings(database_url, tmp_path, bot="rasa", rasa_url=rasa.url, rasa_timeout=0.5)
    hub = await start_hub(settings, knowledge_base=None)
    try:
        cid, contact = await _customer(hub, "d1")
        await wait_for(lambda: rasa.trackers.get(str(cid)))
        bridge = hub.app[BOT_BRIDGE]
        bridge.max_attempts, bridge.base_delay, bridge.max_delay = 2, 0.01, 0.02
        rasa.down = True
        await hub.api("DELETE", f"/api/v1/contacts/{contact}")

        async def dead() -> list[dict]:
            items = (await hub.api("GET", "/api/v1/jobs", params={"queue": "bot", "status": "dead"}))["items"]
            return [job for job in items if job["kind"] == "forget"]

        [job] = await wait_for(dead, timeout=10)
        assert NAME not in str(job) and "walnut" not in str(job)
        assert rasa.trackers[str(cid)]  # Rasa still holds their words
        rasa.down = False
        await hub.api("POST", f"/api/v1/jobs/bot/{job['id']}/retry")
        await wait_for(lambda: str(cid) in rasa.forgotten, timeout=10)
        assert rasa.trackers[str(cid)] == []
    finally:
        await hub.client.close()
        await rasa.stop()
