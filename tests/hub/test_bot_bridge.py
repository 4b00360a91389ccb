"""The hub's side of the bot: durable bot jobs, replies, handoff, resume,
and the fallback when Rasa is down or slow (Rasa stand-in on loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.bot.bridge import SUBJECT_READ_UP_TO_WORDS
from hub.events import TicketOpened
from hub.keys import BOT_BRIDGE
from hub.storage.schema import bot_jobs
from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
from tests.conftest import Hub, close_hub, make_settings, start_hub, wait_for
from tests.fakes.rasa import FakeRasa


async def _bot_hub(database_url: str, tmp_path: Path, rasa: FakeRasa, **overrides: object) -> Hub:
    settings = make_settings(
        database_url, tmp_path, bot="rasa", rasa_url=rasa.url, rasa_timeout=0.5, rasa_ready_wait=1.0, **overrides
    )
    return await start_hub(settings, knowledge_base=None)


async def _kb_hub(database_url: str, tmp_path: Path, rasa: FakeRasa, **overrides: object) -> tuple[Hub, KnowledgeBase]:
    """A hub with the bot on the Rasa stand-in and the sample knowledge base (hashing embedder)."""
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    settings = make_settings(
        database_url, tmp_path, bot="rasa", rasa_url=rasa.url, kb_enabled=True, kb_seed_dir=SAMPLE_DIR,
        **{"rasa_timeout": 2.0, "rasa_ready_wait": 1.0, **overrides},
    )  # fmt: skip
    return await start_hub(settings, knowledge_base=kb), kb


async def _timeline(hub: Hub, conversation_id: int) -> list[dict]:
    return (await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline", params={"limit": 200}))["items"]


async def _say(hub: Hub, sender: str, text: str, ext: str) -> dict:
    r = await hub.inbound({"from": sender, "text": text, "id": ext})
    return await hub.api("GET", f"/api/v1/messages/{r['received'][0]['message_id']}")


@pytest.mark.asyncio
async def test_bot_answers_hands_off_and_resumes_after_resolve(
    database_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    hub = await _bot_hub(database_url, tmp_path, rasa)
    handoffs: list[TicketOpened] = []

    async def on_handoff(event: TicketOpened) -> None:
        handoffs.append(event)

    hub.service.bus.subscribe(TicketOpened, on_handoff)
    try:
        first = await _say(hub, "bot-visitor", "How do refunds work?", "b1")
        cid = first["conversation_id"]
        await wait_for(lambda: _has(hub, cid, "Answer to: How do refunds work?"))
        [answer] = [m for m in await _timeline(hub, cid) if m["author_kind"] == "bot"]
        assert answer["meta"]["kb_hits"][0]["article_id"] == "refunds" and answer["meta"]["in_reply_to"] == first["id"]
        sent = hub.channel("fake").recorder
        await wait_for(lambda: any(m.text.startswith("Answer to") for m in sent.sent))
        assert rasa.received[0]["sender"] == str(cid) and rasa.received[0]["metadata"]["channel"] == "fake"

        await _say(hub, "bot-visitor", "I want to talk to a person", "b2")
        await wait_for(lambda: handoffs)
        conversation = await hub.api("GET", f"/api/v1/conversations/{cid}")
        assert conversation["handler"] == "human" and handoffs[0].conversation_id == cid
        [ticket] = (await hub.api("GET", "/api/v1/tickets"))["items"]
        assert ticket["source"] == "bot"
        # While humans have it, the bot is not asked.
        asked = len(rasa.received)
        await _say(hub, "bot-visitor", "hello? anyone?", "b3")
        await hub.api(
            "POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "Hi, Sam here."}, expect=201
        )
        assert len(rasa.received) == asked

        await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"status": "resolved"})
        await wait_for(lambda: rasa.resumed == [str(cid)])
        assert (await hub.api("GET", f"/api/v1/conversations/{cid}"))["handler"] == "bot"
        await _say(hub, "bot-visitor", "one more question about shipping", "b4")
        await wait_for(lambda: _has(hub, cid, "Answer to: one more question about shipping"))
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_urgent_handoff_sets_priority(sqlite_url: str, tmp_path: Path, rasa: FakeRasa) -> None:
    hub = await _bot_hub(sqlite_url, tmp_path, rasa)
    try:
        msg = await _say(hub, "angry", "your site is down and I'm losing money", "u1")
        cid = msg["conversation_id"]
        await wait_for(lambda: _conversation_is(hub, cid, handler="human", priority="urgent"))
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_the_bot_reads_the_subject_with_the_message_that_opened_the_conversation(
    database_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    hub = await _bot_hub(database_url, tmp_path, rasa)
    try:
        said = await hub.inbound({"from": "subj@x", "text": "It says wrong code.", "subject": "Re: FW: can't log in"})
        first = await hub.api("GET", f"/api/v1/messages/{said['received'][0]['message_id']}")
        cid = first["conversation_id"]
        await wait_for(lambda: len(rasa.received) == 1)
        # Without its "Re:" and "FW:"; the timeline keeps the message as written.
        assert rasa.received[0]["message"] == "can't log in\nIt says wrong code."
        assert first["body"] == "It says wrong code."
        # A later message of the conversation is read alone, whatever its subject.
        await hub.inbound({"from": "subj@x", "text": "Still stuck.", "subject": "Re: can't log in"})
        await wait_for(lambda: len(rasa.received) == 2)
        assert rasa.received[1]["message"] == "Still stuck."
        assert (await hub.api("GET", f"/api/v1/conversations/{cid}"))["subject"] == "Re: FW: can't log in"
        # A subject the text already holds is not read twice; no subject, the text alone.
        await hub.inbound(
            {"from": "subj2@x", "text": "Order 12 came broken, refund please", "subject": "Refund Please"}
        )
        await hub.inbound({"from": "subj3@x", "text": "Where is my order?"})
        # A long message says what it asks: its subject line is not read.
        story = " ".join(["We ordered a tent."] * (SUBJECT_READ_UP_TO_WORDS // 4 + 1))
        await hub.inbound({"from": "subj4@x", "text": story, "subject": "Wrong colour"})
        await wait_for(lambda: len(rasa.received) == 5)
        assert sorted(r["message"] for r in rasa.received[2:]) == [
            "Order 12 came broken, refund please",
            story,
            "Where is my order?",
        ]
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_rasa_gets_the_hubs_triage_and_the_reply_keeps_the_bots_decision(
    sqlite_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    import yaml

    examples = tmp_path / "urgent.yml"
    examples.write_text(yaml.safe_dump({
        "urgent": ["my card was stolen and someone is using it", "someone stole my card today",
                   "my card got stolen on the bus", "stolen card being used right now", "thief has my card"],
        "not_urgent": ["how do i order a new card", "what does a new card cost", "how do i activate a card",
                       "can i choose a card design", "how long does a new card take"],
    }))  # fmt: skip
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    settings = make_settings(
        sqlite_url,
        tmp_path,
        bot="rasa",
        rasa_url=rasa.url,
        rasa_timeout=2.0,
        rasa_ready_wait=1.0,
        kb_enabled=True,
        bot_urgent_examples=examples,
        bot_urgent_max_false=0.0,
    )
    hub = await start_hub(settings, knowledge_base=kb)
    try:
        # A rule that raises a ticket's priority without handing off on its own: the bot hears of it.
        rule = await hub.api(
            "POST",
            "/api/v1/routing/rules",
            role="admin",
            expect=201,
            json={"kind": "keyword", "params": {"words": ["wallet"]}, "priority": "urgent", "handoff": False},
        )
        await wait_for(lambda: hub.app[BOT_BRIDGE].triage.examples is not None)
        first = await _say(hub, "triaged", "someone stole my card and my wallet", "t1")
        await wait_for(lambda: _has(hub, first["conversation_id"], "Answer to: someone stole my card and my wallet"))
        triage = rasa.received[-1]["metadata"]["triage"]
        assert triage["rules"] == [rule["id"]]
        assert triage["examples"]["urgent"] is True and triage["examples"]["nearest"]
        calm = await _say(hub, "triaged", "how do i order a new card", "t2")
        await wait_for(lambda: _has(hub, calm["conversation_id"], "Answer to: how do i order a new card"))
        assert rasa.received[-1]["metadata"]["triage"]["examples"]["urgent"] is False
        assert "rules" not in rasa.received[-1]["metadata"]["triage"]
        [answer, *_] = [m for m in await _timeline(hub, first["conversation_id"]) if m["author_kind"] == "bot"]
        assert answer["meta"]["decision"] == {"action": "answer", "article_id": "refunds"}
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_rasa_down_falls_back_to_kb_or_handoff_and_loses_nothing(
    sqlite_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    settings = make_settings(
        sqlite_url,
        tmp_path,
        bot="rasa",
        rasa_url=rasa.url,
        rasa_timeout=0.3,
        kb_enabled=True,
        kb_seed_dir=SAMPLE_DIR,
        bot_confidence_threshold=0.0,
    )
    hub = await start_hub(settings, knowledge_base=kb)
    try:
        ok = await _say(hub, "fallback-visitor", "hello there", "f0")
        await wait_for(lambda: _has(hub, ok["conversation_id"], "Answer to: hello there"))
        rasa.down = True
        msg = await _say(hub, "fallback-visitor", "How long does a refund take?", "f1")
        cid = msg["conversation_id"]
        await wait_for(lambda: _bot_replies(hub, cid, 2), timeout=10)
        fallback = [m for m in await _timeline(hub, cid) if m["author_kind"] == "bot"][-1]
        assert fallback["meta"]["fallback"] is True and "Read more: " in fallback["body"]
        ready = await (await hub.client.get("/readyz")).json()
        assert ready["status"] == "degraded" and "bot" in ready["degraded"]
        assert 'hub_degraded{component="rasa"} 1.0' in await (await hub.client.get("/metrics")).text()

        rasa.down = False
        rasa.delay = 1.0  # slower than the timeout: same fallback path
        slow = await _say(hub, "slow-visitor", "zzzz qqqq", "f2")
        await wait_for(lambda: _bot_replies(hub, slow["conversation_id"], 1), timeout=10)

        rasa.delay = 0.0
        back = await _say(hub, "fallback-visitor", "and now?", "f3")
        await wait_for(lambda: _has(hub, back["conversation_id"], "Answer to: and now?"), timeout=10)
        assert (await (await hub.client.get("/readyz")).json())["status"] == "ready"
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_rasa_down_without_confident_answer_hands_off(sqlite_url: str, tmp_path: Path, rasa: FakeRasa) -> None:
    rasa.down = True
    hub = await _bot_hub(sqlite_url, tmp_path, rasa)
    try:
        msg = await _say(hub, "nobody-home", "Can you help me?", "h1")
        await wait_for(lambda: _conversation_is(hub, msg["conversation_id"], handler="human"), timeout=10)
        replies = [m for m in await _timeline(hub, msg["conversation_id"]) if m["author_kind"] == "bot"]
        assert len(replies) == 1 and "team" in replies[0]["body"]
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_messages_received_while_hub_is_down_are_answered_after_restart(
    sqlite_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    """Bot jobs are written with the message: a crash before the bot answered loses nothing."""
    from datetime import timedelta

    from hub.conversations.ingest import ingest
    from hub.messages import InboundMessage
    from hub.storage import open_database

    db = open_database(sqlite_url)
    try:
        stored = await db.write(
            ingest,
            InboundMessage(channel="fake", sender="early-bird", text="Are you open?", external_id="crash-1"),
            identity_kind="fake",
            reopen_window=timedelta(hours=1),
            enqueue_bot=True,
        )
    finally:
        await db.close()
    hub = await _bot_hub(sqlite_url, tmp_path, rasa)
    try:
        await wait_for(lambda: _has(hub, stored.conversation.id, "Answer to: Are you open?"))
        assert [r["message"] for r in rasa.received] == ["Are you open?"]
    finally:
        await hub.client.close()


async def _has(hub: Hub, cid: int, body: str) -> bool:
    return any(m["body"] == body for m in await _timeline(hub, cid))


async def _bot_replies(hub: Hub, cid: int, count: int) -> bool:
    return len([m for m in await _timeline(hub, cid) if m["author_kind"] == "bot"]) >= count


async def _conversation_is(hub: Hub, cid: int, **expected: str) -> bool:
    conversation = await hub.api("GET", f"/api/v1/conversations/{cid}")
    return all(conversation[k] == v for k, v in expected.items())


@pytest.mark.asyncio
async def test_bot_is_starting_until_rasa_is_up_and_warmed(sqlite_url: str, tmp_path: Path, rasa: FakeRasa) -> None:
    """/readyz does not call the bot ready while Rasa loads; once Rasa answers,
    one parse builds its graphs before any customer's message goes to it."""
    rasa.down = True
    settings = make_settings(
        sqlite_url, tmp_path, bot="rasa", rasa_url=rasa.url, rasa_timeout=0.5, rasa_ready_wait=30.0
    )
    hub = await start_hub(settings, knowledge_base=None)
    try:
        early = await _say(hub, "early-visitor", "Is anyone there?", "s1")
        ready = await (await hub.client.get("/readyz")).json()
        assert ready["status"] == "degraded" and ready["checks"]["bot"] == {"ok": False, "mode": "starting"}
        rasa.down = False
        await wait_for(lambda: _has(hub, early["conversation_id"], "Answer to: Is anyone there?"))
        assert rasa.calls[:2] == ["parse", "webhook"]
        assert (await (await hub.client.get("/readyz")).json())["status"] == "ready"
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_a_resolve_on_one_of_two_instances_resumes_the_bot_once(
    database_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    """Two hubs on one database, each with its bot bridge and job worker: the
    resume job is written once, by the resolving transaction, and run once."""
    a = await _bot_hub(database_url, tmp_path / "a", rasa)
    b = await _bot_hub(database_url, tmp_path / "b", rasa)
    try:
        first = await _say(a, "two-instances", "I want to talk to a person", "t1")
        cid = first["conversation_id"]
        await wait_for(lambda: _conversation_is(b, cid, handler="human"))
        await b.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"status": "resolved"})
        await wait_for(lambda: rasa.resumed == [str(cid)])
        await asyncio.sleep(0.5)  # both workers poll again meanwhile
        assert rasa.resumed == [str(cid)]

        def resume_jobs(conn: Any) -> int:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(bot_jobs)
                    .where(bot_jobs.c.conversation_id == cid, bot_jobs.c.kind == "resume")
                ).scalar_one()
            )

        assert await a.db.read(resume_jobs) == 1
    finally:
        await b.client.close()
        await a.client.close()


@pytest.mark.asyncio
async def test_a_message_taken_before_the_bridge_starts_or_after_it_stopped_keeps_its_bot_job(
    database_url: str, tmp_path: Path
) -> None:
    """A deployment whose bot answers durable jobs writes them whether or not
    the bridge is attached: the SMTP server takes mail while the hub is still
    starting (before the bridge) and while it stops (after it), and a job
    written then is answered at the next start or by another instance."""
    from hub import keys
    from hub.conversations.service import HubService
    from hub.messages import InboundMessage

    hub = await start_hub(make_settings(database_url, tmp_path))
    try:
        app = hub.app

        def service(bot_jobs: bool) -> HubService:
            return HubService(hub.db, app[keys.BUS], app[keys.CHANNELS], app[keys.METRICS], bot_jobs=bot_jobs)

        async def jobs() -> int:
            return int(
                await hub.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(bot_jobs)).scalar())
            )

        starting = service(bot_jobs=True)  # no bridge attached yet
        await starting.ingest(
            InboundMessage(channel="fake", sender="early@example.test", text="hello", external_id="e1")
        )
        assert await jobs() == 1
        starting.attach_bot(lambda: None)
        starting.detach_bot()  # the bridge stopped; the channels still take messages
        await starting.ingest(
            InboundMessage(channel="fake", sender="late@example.test", text="hello", external_id="l1")
        )
        assert await jobs() == 2
        without = service(bot_jobs=False)  # no bot in this deployment: nothing waits for one
        await without.ingest(InboundMessage(channel="fake", sender="none@example.test", text="hello", external_id="n1"))
        assert await jobs() == 2
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_rasa_and_the_triage_read_a_message_without_the_searchs_edge_runs(
    sqlite_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    """The search splits an unpunctuated closing off a question (``focus.edge_runs``); the hub's
    triage, and Rasa after it, read the message split at its punctuation only."""
    hub, kb = await _kb_hub(sqlite_url, tmp_path, rasa)
    try:
        typed = "how long does a refund take have a nice day"
        assert await kb.as_searched(typed) == "how long does a refund take"  # what the search reads
        assert await kb.as_searched(typed, edges=False) == typed
        sent = await _say(hub, "edges-visitor", typed, "e1")
        await wait_for(lambda: _has(hub, sent["conversation_id"], f"Answer to: {typed}"))
        assert rasa.received[-1]["message"] == typed
        assert "searched" not in rasa.received[-1]["metadata"].get("triage", {})
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_while_rasa_is_held_the_triage_does_not_ask_it_either(
    sqlite_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    """A held bridge (its Rasa restarting, a stranger on its port) answers without Rasa, and tells
    the triage not to ask Rasa about a long message's sentences (``Triage(rasa=False)``)."""
    hub, _ = await _kb_hub(sqlite_url, tmp_path, rasa)
    bridge = hub.app[BOT_BRIDGE]
    real = bridge.triage
    asked_rasa: list[bool] = []

    async def recording(text: str, *, rasa: bool = True) -> dict[str, Any]:
        asked_rasa.append(rasa)
        return await real(text, rasa=rasa)

    bridge.triage = recording
    try:
        first = await _say(hub, "held-visitor", "hello there", "h0")  # the bridge is up and asks Rasa
        await wait_for(lambda: _has(hub, first["conversation_id"], "Answer to: hello there"), timeout=10)
        assert asked_rasa == [True]
        asked_before = len(rasa.received)

        bridge.hold("a stranger holds Rasa's port")
        held = await _say(hub, "held-visitor", "How long does a refund take?", "h1")
        await wait_for(lambda: _bot_replies(hub, held["conversation_id"], 2), timeout=10)
        fallback = [m for m in await _timeline(hub, held["conversation_id"]) if m["author_kind"] == "bot"][-1]
        assert fallback["meta"]["fallback"] is True
        assert asked_rasa == [True, False] and len(rasa.received) == asked_before

        bridge.release()
        back = await _say(hub, "released-visitor", "and now?", "h2")  # the fallback may have handed off
        await wait_for(lambda: _has(hub, back["conversation_id"], "Answer to: and now?"), timeout=10)
        assert asked_rasa == [True, False, True]
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_with_rasa_down_a_message_urgent_to_the_triage_goes_to_a_person_as_urgent(
    sqlite_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    """The fallback keeps the urgency signals that need no Rasa: an admin's urgent rule or a safety
    phrase hands off as urgent (with the help line for the latter), even where the knowledge base
    would answer; a calm message still gets the knowledge base's answer."""
    from bot.actions import messages as bot_messages

    rasa.down = True
    # The knowledge base would answer anything (threshold 0).
    hub, _ = await _kb_hub(sqlite_url, tmp_path, rasa, rasa_timeout=0.3, bot_confidence_threshold=0.0)
    try:
        await hub.api(
            "POST",
            "/api/v1/routing/rules",
            role="admin",
            expect=201,
            json={"kind": "keyword", "params": {"words": ["stolen"]}, "priority": "urgent", "handoff": False},
        )
        calm = await _say(hub, "calm-visitor", "How long does a refund take?", "u0")
        await wait_for(lambda: _bot_replies(hub, calm["conversation_id"], 1), timeout=10)
        [answer] = [m for m in await _timeline(hub, calm["conversation_id"]) if m["author_kind"] == "bot"]
        assert answer["meta"]["fallback"] is True and "Read more: " in answer["body"]
        assert "handoff" not in answer["meta"]
        assert await _conversation_is(hub, calm["conversation_id"], handler="bot")

        stolen = await _say(hub, "robbed-visitor", "my card was stolen, how long does a refund take?", "u1")
        cid = stolen["conversation_id"]
        await wait_for(lambda: _conversation_is(hub, cid, handler="human", priority="urgent"), timeout=10)
        [reply] = [m for m in await _timeline(hub, cid) if m["author_kind"] == "bot"]
        assert reply["meta"]["fallback"] is True and reply["meta"]["handoff"] is True
        assert reply["meta"]["priority"] == "urgent" and "rules" in reply["meta"]["signals"]
        assert "Read more: " not in reply["body"] and bot_messages.SAFETY not in reply["body"]

        # The same message again (a provider retry): no second reply, no second ticket.
        await hub.inbound(
            {"from": "robbed-visitor", "text": "my card was stolen, how long does a refund take?", "id": "u1"}
        )
        tickets = (await hub.api("GET", "/api/v1/tickets", params={"status": "all"}))["items"]
        assert [t["priority"] for t in tickets if t["conversation_id"] == cid] == ["urgent"]
        assert len([m for m in await _timeline(hub, cid) if m["author_kind"] == "bot"]) == 1

        crisis = await _say(hub, "crisis-visitor", "i want to end it all, how do i close my account", "u2")
        await wait_for(lambda: _conversation_is(hub, crisis["conversation_id"], handler="human", priority="urgent"))
        [reply] = [m for m in await _timeline(hub, crisis["conversation_id"]) if m["author_kind"] == "bot"]
        assert "safety" in reply["meta"]["signals"] and reply["body"].endswith(bot_messages.SAFETY)
    finally:
        await close_hub(hub)
