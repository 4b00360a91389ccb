"""Identity resolution, merge, export and erasure, over every storage backend."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.conversations import references
from hub.conversations.contacts import normalise_address
from hub.errors import InvalidInput
from hub.events import utcnow
from hub.storage import schema
from hub.storage.schema import metadata
from tests.conftest import Hub


def test_addresses_are_normalised() -> None:
    assert normalise_address("email", "  Ada@Example.COM ") == "ada@example.com"
    assert normalise_address("phone", "+1 (415) 555-0100") == "+14155550100"
    assert normalise_address("phone", "020 7946 0958", default_region="GB") == "+442079460958"
    with pytest.raises(InvalidInput):
        normalise_address("email", "not-an-address")
    with pytest.raises(InvalidInput):
        normalise_address("phone", "12")


async def _contact_of(hub: Hub, message_id: int) -> int:
    return (await hub.api("GET", f"/api/v1/messages/{message_id}"))["contact_id"]


@pytest.mark.asyncio
async def test_merge_keeps_every_message_in_order(hub: Hub) -> None:
    # Two people-records that are the same person, their messages interleaved in time.
    sent = []
    for index, sender in enumerate(["chat-visitor", "ada-sms", "chat-visitor", "ada-sms", "chat-visitor"]):
        body = await hub.inbound({"from": sender, "text": f"message {index}", "id": f"m{index}"})
        sent.append(body["received"][0]["message_id"])
    visitor = await _contact_of(hub, sent[0])
    sms = await _contact_of(hub, sent[1])
    assert visitor != sms

    merged = await hub.api("POST", f"/api/v1/contacts/{sms}/merge", role="agent", json={"source_id": visitor})
    assert merged["id"] == sms
    await hub.api("GET", f"/api/v1/contacts/{visitor}", expect=404)

    page = await hub.api("GET", f"/api/v1/contacts/{sms}/timeline", params={"limit": 50})
    customer = [m for m in page["items"] if m["kind"] == "message"]
    assert [m["body"] for m in customer] == [f"message {i}" for i in range(5)]
    assert [m["id"] for m in customer] == sent
    events = [m for m in page["items"] if m["kind"] == "event"]
    assert events and events[-1]["meta"]["event"] == "contacts-merged"
    # Both conversations now belong to the merged contact.
    conversations = await hub.api("GET", "/api/v1/conversations", params={"contact_id": sms})
    assert len(conversations["items"]) == 2
    audit = await hub.api("GET", "/api/v1/audit")
    assert any(e["action"] == "contact.merge" for e in audit["items"])


@pytest.mark.asyncio
async def test_verified_email_links_chat_to_existing_contact(hub: Hub) -> None:
    first = await hub.inbound(
        {"from": "sms-person", "text": "hi", "id": "e1", "hints": {"email": "Ada@Example.com"}, "hints_verified": True}
    )
    ada = await _contact_of(hub, first["received"][0]["message_id"])
    # Same person shows up on another address, vouching for the same e-mail.
    second = await hub.inbound(
        {
            "from": "visitor-77",
            "text": "it's me again",
            "id": "e2",
            "hints": {"email": "ada@example.com"},
            "hints_verified": True,
        }
    )
    assert await _contact_of(hub, second["received"][0]["message_id"]) == ada
    contact = await hub.api("GET", f"/api/v1/contacts/{ada}")
    assert contact["email"] == "ada@example.com"
    # An unverified claim never merges: it is kept as an attribute only.
    third = await hub.inbound(
        {"from": "visitor-99", "text": "I am Ada, honest", "id": "e3", "hints": {"email": "ada@example.com"}}
    )
    other = await _contact_of(hub, third["received"][0]["message_id"])
    assert other != ada
    assert (await hub.api("GET", f"/api/v1/contacts/{other}"))["attributes"]["email_unverified"] == "ada@example.com"


@pytest.mark.asyncio
async def test_export_contains_everything(hub: Hub) -> None:
    r = await hub.inbound({"from": "exporter", "text": "my data please", "id": "x1", "name": "Eve"})
    contact_id = await _contact_of(hub, r["received"][0]["message_id"])
    await hub.api("GET", f"/api/v1/contacts/{contact_id}/export", role="agent", expect=403)
    data = await hub.api("GET", f"/api/v1/contacts/{contact_id}/export")
    assert data["contact"]["name"] == "Eve"
    assert [i["address"] for i in data["identities"]] == ["exporter"]
    assert [m["body"] for m in data["messages"]] == ["my data please"]
    assert len(data["conversations"]) == 1
    # Tickets, their history (timeline events) and the audit entries about them.
    conversation_id = data["conversations"][0]["id"]
    ticket = await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", json={"priority": "high"}, expect=201
    )
    await hub.api("PATCH", f"/api/v1/contacts/{contact_id}", role="agent", json={"tags": ["vip"]})
    data = await hub.api("GET", f"/api/v1/contacts/{contact_id}/export")
    assert [t["id"] for t in data["tickets"]] == [ticket["id"]] and data["tickets"][0]["priority"] == "high"
    assert any(m["meta"].get("event") == "ticket-opened" for m in data["messages"])
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/priority", json={"priority": "urgent"})
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve")
    data = await hub.api("GET", f"/api/v1/contacts/{contact_id}/export")
    history = [(e["ticket_id"], e["meta"]["event"]) for e in data["ticket_events"]]
    assert (ticket["id"], "ticket-opened") in history and (ticket["id"], "priority-changed") in history
    assert (ticket["id"], "status-changed") in history and {t for t, _ in history} == {ticket["id"]}
    actions = {(a["action"], a["target_type"]) for a in data["audit"]}
    assert ("ticket.handoff", "conversation") in actions and ("contact.update", "contact") in actions


@pytest.mark.asyncio
async def test_erased_contact_is_gone_from_every_table(hub: Hub) -> None:
    r = await hub.inbound(
        {
            "from": "forget-me",
            "text": "secret words",
            "id": "f1",
            "name": "Frank Forget",
            "hints": {"email": "frank@example.com"},
            "hints_verified": True,
        }
    )
    message_id = r["received"][0]["message_id"]
    contact_id = await _contact_of(hub, message_id)
    conversation_id = (await hub.api("GET", f"/api/v1/messages/{message_id}"))["conversation_id"]
    await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        role="agent",
        json={"text": "noted, Frank"},
        expect=201,
    )
    await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/notes",
        role="agent",
        json={"text": "Frank is upset"},
        expect=201,
    )
    await hub.api("PATCH", f"/api/v1/contacts/{contact_id}", role="agent", json={"tags": ["vip"]})
    ticket = await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/handoff",
        role="agent",
        json={"reason": "Frank asked"},
        expect=201,
    )
    me = await hub.api("GET", "/api/v1/me")
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/assign", json={"assignee_id": me["id"]})
    assert (await hub.api("GET", f"/api/v1/agents/{me['id']}"))["open_tickets"] == 1
    # A Slack job of the kind queued before jobs named their message: it
    # carried the customer's text.
    from hub.slack import jobs as slack_jobs

    await hub.db.write(
        slack_jobs.enqueue, "thread", {"text": "*Frank Forget*: secret words"}, ticket_id=ticket["id"], dedup_key="t:f1"
    )
    # The customer writes again: the ticket's thread gets a job naming the
    # message (as the Slack desk queues it; this hub has no Slack).
    again = await hub.inbound({"from": "forget-me", "text": "more secret words", "id": "f3"})
    again_id = again["received"][0]["message_id"]
    await hub.db.write(
        slack_jobs.enqueue, "thread", {"message_id": again_id}, ticket_id=ticket["id"], dedup_key=f"thread:{again_id}"
    )
    # The team's notice of a breached SLA names the ticket in its dedup key only.
    await hub.db.write(
        slack_jobs.enqueue,
        "notify",
        {"channel": "C1", "text": f"SLA breached on ticket #{ticket['id']}"},
        dedup_key=f"breach:{ticket['id']}:first_response:2026-01-01T00:00:00+00:00",
    )
    # A bot job of the conversation (the bot is off in this hub; the queue is the real one).
    from hub.bot.bridge import enqueue_resume

    await hub.db.write(enqueue_resume, conversation_id)
    # A helpful vote on the bot's answer offers the customer's question as an article phrasing.
    from hub.kb.suggestions import PhrasingSuggestions

    phrasings = PhrasingSuggestions(hub.db, public_url="http://hub.test", knowledge_base=None)
    feedback = {"helpful": True, "collection": "help", "article_id": "refunds", "query": "Frank's secret words?"}
    assert await phrasings.from_bot_feedback([{"kb_feedback": feedback}], conversation_id=conversation_id, now=utcnow())
    other = await hub.inbound({"from": "someone-else", "text": "unrelated", "id": "f2"})
    jobs_before = await hub.db.read(
        lambda conn: conn.execute(sa.select(sa.func.count()).select_from(schema.slack_jobs)).scalar_one()
    )
    assert await hub.db.read(_find_in_every_table, ("Frank", "secret words"))  # the scan does find them

    await hub.api("DELETE", f"/api/v1/contacts/{contact_id}", role="agent", expect=403)
    result = await hub.api("DELETE", f"/api/v1/contacts/{contact_id}")
    deleted = result["deleted"]
    assert deleted["messages"] >= 4 and deleted["identities"] == 2 and deleted["conversations"] == 1
    assert deleted["tickets"] == 1 and deleted["outbox"] == 1 and deleted["bot_jobs"] == 1
    assert deleted["kb_phrasing_suggestions"] == 1
    # The old thread job, the new one and the breach notice: every Slack job was theirs.
    assert deleted["slack_jobs"] == jobs_before == 3
    admin = await hub.api("GET", "/api/v1/me")
    assert (await hub.api("GET", f"/api/v1/agents/{admin['id']}"))["open_tickets"] == 0  # the erased ticket freed

    needles = ("forget-me", "Frank", "frank@example.com", "secret words")
    assert await hub.db.read(_find_in_every_table, needles) == []
    await hub.api("GET", f"/api/v1/contacts/{contact_id}", expect=404)
    # The other contact is untouched.
    assert (await hub.api("GET", f"/api/v1/messages/{other['received'][0]['message_id']}"))["body"] == "unrelated"


def _find_in_every_table(conn: sa.Connection, needles: tuple[str, ...]) -> list[str]:
    """``table.column: needle`` for each text or JSON column of the schema
    that holds one of ``needles`` (every table, every row)."""
    hits = []
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.JSON)]
        if not columns:  # counts only (report_agent_quarters): nothing to find
            continue
        for row in conn.execute(sa.select(*columns)):
            for column, value in zip(columns, row, strict=True):
                text = value if isinstance(value, str) else json.dumps(value)
                hits += [f"{table.name}.{column.name}: {n}" for n in needles if n in text]
    return hits


async def _handoff(hub: Hub, message_id: int) -> dict:
    conversation_id = (await hub.api("GET", f"/api/v1/messages/{message_id}"))["conversation_id"]
    return await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", json={"reason": "help"}, expect=201
    )


@pytest.mark.asyncio
async def test_merge_moves_the_merged_contacts_tickets(hub: Hub) -> None:
    kept = await hub.inbound({"from": "keeper", "text": "hello", "id": "k1"})
    gone = await hub.inbound({"from": "merged-away", "text": "my parcel is lost", "id": "k2"})
    target = await _contact_of(hub, kept["received"][0]["message_id"])
    source = await _contact_of(hub, gone["received"][0]["message_id"])
    ticket = await _handoff(hub, gone["received"][0]["message_id"])
    await hub.api("POST", f"/api/v1/contacts/{target}/merge", role="agent", json={"source_id": source})
    moved = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
    assert moved["contact_id"] == target and moved["status"] == "open"
    conversation = await hub.api("GET", f"/api/v1/conversations/{moved['conversation_id']}")
    assert conversation["contact_id"] == target and conversation["handler"] == "human"
    # The ticket's history (its events on the timeline) came along.
    export = await hub.api("GET", f"/api/v1/contacts/{target}/export")
    assert [t["id"] for t in export["tickets"]] == [ticket["id"]]
    assert (ticket["id"], "ticket-opened") in {(e["ticket_id"], e["meta"]["event"]) for e in export["ticket_events"]}


@pytest.mark.asyncio
async def test_export_has_the_audit_of_contacts_merged_into_it(hub: Hub) -> None:
    async def contact(sender: str) -> int:
        r = await hub.inbound({"from": sender, "text": "hi", "id": sender})
        return await _contact_of(hub, r["received"][0]["message_id"])

    first, second, last = await contact("record-1"), await contact("record-2"), await contact("record-3")
    await hub.api("PATCH", f"/api/v1/contacts/{first}", role="agent", json={"tags": ["vip"]})
    # The same person's records merged one into the next: the last holds them all.
    await hub.api("POST", f"/api/v1/contacts/{second}/merge", role="agent", json={"source_id": first})
    await hub.api("POST", f"/api/v1/contacts/{last}/merge", role="agent", json={"source_id": second})
    export = await hub.api("GET", f"/api/v1/contacts/{last}/export")
    about = {(a["action"], a["target_type"], a["target_id"]) for a in export["audit"]}
    assert ("contact.update", "contact", str(first)) in about
    assert {("contact.merge", "contact", str(second)), ("contact.merge", "contact", str(last))} <= about
    assert export["merged_contact_ids"] == [first, second]
    # Erasing the person clears the details of those entries too.
    await hub.api("DELETE", f"/api/v1/contacts/{last}")
    entries = (await hub.api("GET", "/api/v1/audit", params={"limit": 100}))["items"]
    merges = [e for e in entries if e["action"] == "contact.merge"]
    assert len(merges) == 2 and all(e["details"] == {} for e in merges)


@pytest.mark.asyncio
async def test_auto_merge_through_a_verified_hint_keeps_tickets(hub: Hub) -> None:
    older = await hub.inbound(
        {"from": "ada-sms", "text": "hi", "id": "a1", "hints": {"email": "ada@example.com"}, "hints_verified": True}
    )
    ada = await _contact_of(hub, older["received"][0]["message_id"])
    chat = await hub.inbound({"from": "ada-chat", "text": "my card was stolen", "id": "a2"})
    ticket = await _handoff(hub, chat["received"][0]["message_id"])
    # The chat visitor signs in: the same verified address merges the newer contact into Ada.
    again = await hub.inbound(
        {
            "from": "ada-chat",
            "text": "it's me",
            "id": "a3",
            "hints": {"email": "ada@example.com"},
            "hints_verified": True,
        }
    )
    assert await _contact_of(hub, again["received"][0]["message_id"]) == ada
    kept = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
    assert kept["contact_id"] == ada and kept["status"] == "open"


def _schema_copy() -> sa.MetaData:
    copy = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def test_every_foreign_key_to_contacts_is_handled_by_merge_and_erasure() -> None:
    from hub.conversations.contacts import contact_references, unhandled_contact_references

    assert unhandled_contact_references() == []
    found = {f"{c.table.name}.{c.name}" for c in contact_references()}
    assert {"identities.contact_id", "conversations.contact_id", "messages.contact_id", "tickets.contact_id"} <= found
    # The next table that points at contacts is reported until it is handled.
    copy = _schema_copy()
    sa.Table(
        "contact_notes",
        copy,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id")),
    )
    assert unhandled_contact_references(copy) == ["contact_notes.contact_id"]
    with pytest.raises(RuntimeError, match=r"contact_notes\.contact_id"):
        references.check(copy)


def test_rows_that_hold_a_contacts_data_without_a_foreign_key_to_contacts_are_found() -> None:
    from hub.conversations.contacts import unhandled_contact_references

    owned = references.owned_tables()
    assert {"identities", "conversations", "messages", "tickets", "outbox", "bot_jobs"} <= set(owned)
    copy = _schema_copy()
    # Cascading from a conversation: erased with it, nothing to declare.
    sa.Table(
        "conversation_labels",
        copy,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("conversation_id", sa.Integer, sa.ForeignKey("conversations.id", ondelete="CASCADE")),
        sa.Column("label", sa.String(50)),
    )
    # Surviving its message (SET NULL) with the customer's words, or naming a
    # ticket without a foreign key: each needs a scrub before erasure runs.
    sa.Table(
        "message_quotes",
        copy,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL")),
        sa.Column("quote", sa.Text),
    )
    sa.Table(
        "ticket_exports",
        copy,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ticket_id", sa.Integer),
        sa.Column("payload", sa.JSON),
    )
    assert "conversation_labels" in references.owned_tables(copy)
    assert sorted(unhandled_contact_references(copy)) == ["message_quotes.message_id", "ticket_exports.ticket_id"]


@pytest.mark.asyncio
async def test_merge_settles_unique_keys_that_include_the_contact(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.conversations.contacts import move_contact_rows

    source = await _contact_of(
        hub, (await hub.inbound({"from": "u-1", "text": "a", "id": "u1"}))["received"][0]["message_id"]
    )
    target = await _contact_of(
        hub, (await hub.inbound({"from": "u-2", "text": "b", "id": "u2"}))["received"][0]["message_id"]
    )
    copy = _schema_copy()
    # One preference per contact and key: the surviving contact's value wins.
    prefs = sa.Table(
        "contact_prefs",
        copy,
        sa.Column("id", schema.BigId, primary_key=True),
        sa.Column("contact_id", schema.BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(50), nullable=False),
        sa.Column("value", sa.String(50), nullable=False),
        sa.UniqueConstraint("contact_id", "key", name="uq_contact_prefs_contact_key"),
    )
    # About one contact record only: goes with the merged-away contact.
    cache = sa.Table(
        "contact_cache",
        copy,
        sa.Column("contact_id", schema.BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("summary", sa.String(100), nullable=False),
    )
    monkeypatch.setattr(references, "MOVED_BY_MERGE", references.MOVED_BY_MERGE | {"contact_prefs.contact_id"})
    monkeypatch.setattr(references, "ERASED_WITH_CONTACT", frozenset({"contact_cache.contact_id"}))

    def merge(conn: sa.Connection) -> tuple[list[tuple], list[tuple], list[int]]:
        prefs.create(conn)
        cache.create(conn)
        conn.execute(
            sa.insert(prefs),
            [
                {"contact_id": source, "key": "lang", "value": "fr"},
                {"contact_id": source, "key": "tz", "value": "Europe/Paris"},
                {"contact_id": target, "key": "lang", "value": "en"},
            ],
        )
        conn.execute(sa.insert(cache), [{"contact_id": source, "summary": "s"}, {"contact_id": target, "summary": "t"}])
        move_contact_rows(conn, source, target, copy)
        return (
            sorted(tuple(r) for r in conn.execute(sa.select(prefs.c.contact_id, prefs.c.key, prefs.c.value))),
            sorted(tuple(r) for r in conn.execute(sa.select(cache.c.contact_id, cache.c.summary))),
            list(conn.execute(sa.select(schema.identities.c.contact_id).order_by(schema.identities.c.id)).scalars()),
        )

    moved_prefs, cached, identity_owners = await hub.db.write(merge)
    assert moved_prefs == [(target, "lang", "en"), (target, "tz", "Europe/Paris")]
    assert cached == [(target, "t")]
    assert identity_owners == [target, target]


@pytest.mark.asyncio
async def test_erasure_says_what_it_erased_for_clean_up_outside_the_database(hub: Hub) -> None:
    from hub.conversations.contacts import ErasedTicket, erase_contact

    r = await hub.inbound({"from": "leaving", "text": "bye", "id": "l1"})
    contact_id = await _contact_of(hub, r["received"][0]["message_id"])
    ticket = await _handoff(hub, r["received"][0]["message_id"])
    await hub.db.write(
        lambda conn: conn.execute(
            sa.update(schema.tickets)
            .where(schema.tickets.c.id == ticket["id"])
            .values(slack_channel="C1", slack_ts="1.2")
        )
    )
    erasure = await hub.db.write(erase_contact, contact_id)
    assert erasure.conversation_ids == [ticket["conversation_id"]]
    assert erasure.tickets == [ErasedTicket(ticket["id"], ticket["conversation_id"], "C1", "1.2")]
    assert erasure["tickets"] == 1 and erasure["conversations"] == 1 and erasure["messages"] >= 2
    assert all(isinstance(n, int) for n in erasure.values())  # what the API and the CLI report


# --- concurrent writers (PostgreSQL: SQLite runs one writer at a time) -----------------


def _skip_unless_postgresql(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: nothing to race")


async def _not_done_yet(pending: asyncio.Future[Any]) -> bool:
    """Still waiting half a second later (on a lock the other transaction holds)."""
    await asyncio.sleep(0.5)
    return not pending.done()


@pytest.mark.asyncio
async def test_merge_never_cascades_away_what_a_concurrent_writer_adds(hub: Hub, database_url: str) -> None:
    _skip_unless_postgresql(database_url)
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.conversations import ingest as ingest_tx
    from hub.conversations.contacts import merge_contacts
    from hub.messages import InboundMessage

    async def contact(sender: str) -> int:
        r = await hub.inbound({"from": sender, "text": "hello", "id": f"{sender}-1"})
        return await _contact_of(hub, r["received"][0]["message_id"])

    target, source, later = await contact("keeper"), await contact("writer"), await contact("late-writer")
    engine = create_async_engine(database_url)
    try:
        # A message for the source, in a new thread, written while the merge
        # runs: its transaction read the source first, so the merge waits for
        # it and moves it (today's main deleted it with the source).
        async with engine.connect() as writer:
            transaction = await writer.begin()
            inbound = InboundMessage(
                channel="fake", sender="writer", text="written meanwhile", external_id="w-2", thread_key="new-thread"
            )
            written = await writer.run_sync(
                ingest_tx.ingest, inbound, identity_kind="fake", reopen_window=timedelta(hours=1)
            )
            merging = asyncio.create_task(
                hub.api("POST", f"/api/v1/contacts/{target}/merge", role="agent", json={"source_id": source})
            )
            assert await _not_done_yet(merging)
            await transaction.commit()
        await asyncio.wait_for(merging, 10)
        moved = await hub.api("GET", f"/api/v1/messages/{written.message.id}")
        assert moved["contact_id"] == target and moved["body"] == "written meanwhile"
        conversation = await hub.api("GET", f"/api/v1/conversations/{written.conversation.id}")
        assert conversation["contact_id"] == target

        # A message that arrives while a merge holds its sender's contact
        # waits, fails its foreign key once the merge commits, and runs again
        # for the surviving contact (today's main answered a 400: lost).
        async with engine.begin() as merger:
            await merger.run_sync(lambda conn: merge_contacts(conn, source_id=later, target_id=target))
            arriving = asyncio.create_task(hub.inbound({"from": "late-writer", "text": "still there?", "id": "lw-2"}))
            assert await _not_done_yet(arriving)
        stored = (await asyncio.wait_for(arriving, 10))["received"][0]
        assert await _contact_of(hub, stored["message_id"]) == target
    finally:
        await engine.dispose()
    timeline = await hub.api("GET", f"/api/v1/contacts/{target}/timeline", params={"limit": 50})
    bodies = [m["body"] for m in timeline["items"] if m["kind"] == "message"]
    assert sorted(bodies) == sorted(["hello", "hello", "hello", "written meanwhile", "still there?"])


@pytest.mark.asyncio
async def test_a_message_during_an_erasure_starts_a_new_contact(hub: Hub, database_url: str) -> None:
    _skip_unless_postgresql(database_url)
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.conversations.contacts import erase_contact

    first = await hub.inbound({"from": "erased-writer", "text": "forget me", "id": "ew-1"})
    erased = await _contact_of(hub, first["received"][0]["message_id"])
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as eraser:
            await eraser.run_sync(erase_contact, erased)
            arriving = asyncio.create_task(hub.inbound({"from": "erased-writer", "text": "hello again", "id": "ew-2"}))
            assert await _not_done_yet(arriving)
        stored = (await asyncio.wait_for(arriving, 10))["received"][0]
    finally:
        await engine.dispose()
    fresh = await _contact_of(hub, stored["message_id"])
    assert fresh != erased
    await hub.api("GET", f"/api/v1/contacts/{erased}", expect=404)
    export = await hub.api("GET", f"/api/v1/contacts/{fresh}/export")
    assert [m["body"] for m in export["messages"]] == ["hello again"]


@pytest.mark.asyncio
async def test_an_erasure_counts_and_erases_what_a_concurrent_writer_adds(hub: Hub, database_url: str) -> None:
    _skip_unless_postgresql(database_url)
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.conversations import ingest as ingest_tx
    from hub.messages import InboundMessage

    first = await hub.inbound({"from": "leaving-writer", "text": "first words", "id": "lw2-1"})
    contact_id = await _contact_of(hub, first["received"][0]["message_id"])
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as writer:
            transaction = await writer.begin()
            inbound = InboundMessage(
                channel="fake", sender="leaving-writer", text="last words", external_id="lw2-2", thread_key="t-2"
            )
            await writer.run_sync(ingest_tx.ingest, inbound, identity_kind="fake", reopen_window=timedelta(hours=1))
            erasing = asyncio.create_task(hub.api("DELETE", f"/api/v1/contacts/{contact_id}"))
            assert await _not_done_yet(erasing)
            await transaction.commit()
        deleted = (await asyncio.wait_for(erasing, 10))["deleted"]
    finally:
        await engine.dispose()
    # The second pass found the writer's conversation and message (not the cascade).
    assert deleted["conversations"] == 2 and deleted["messages"] == 2
    assert await hub.db.read(_find_in_every_table, ("leaving-writer", "first words", "last words")) == []


@pytest.mark.asyncio
async def test_agents_writing_during_a_merge_follow_the_conversation(hub: Hub, database_url: str) -> None:
    """A reply, a note and a handoff on the source's conversation while a
    merge holds the source: each waits and is written for the surviving
    contact, running again if it named the one merged away (today's main
    failed them with a 400: the contact they named was gone)."""
    _skip_unless_postgresql(database_url)
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.conversations.contacts import merge_contacts

    kept = await hub.inbound({"from": "stays", "text": "hello", "id": "s-1"})
    gone = await hub.inbound({"from": "goes", "text": "my order is late", "id": "g-1"})
    target = await _contact_of(hub, kept["received"][0]["message_id"])
    source = await _contact_of(hub, gone["received"][0]["message_id"])
    conversation_id = (await hub.api("GET", f"/api/v1/messages/{gone['received'][0]['message_id']}"))["conversation_id"]
    path = f"/api/v1/conversations/{conversation_id}"
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as merger:
            await merger.run_sync(lambda conn: merge_contacts(conn, source_id=source, target_id=target))
            writes = asyncio.gather(
                hub.api("POST", f"{path}/messages", role="agent", json={"text": "on its way"}, expect=201),
                hub.api("POST", f"{path}/notes", role="agent", json={"text": "courier called"}, expect=201),
                hub.api("POST", f"{path}/handoff", role="agent", json={"reason": "late"}, expect=201),
            )
            assert await _not_done_yet(writes)
        reply, note, ticket = await asyncio.wait_for(writes, 10)
    finally:
        await engine.dispose()
    assert reply["contact_id"] == note["contact_id"] == ticket["contact_id"] == target
    export = await hub.api("GET", f"/api/v1/contacts/{target}/export")
    assert {"on its way", "courier called"} <= {m["body"] for m in export["messages"]}
    assert [t["id"] for t in export["tickets"]] == [ticket["id"]]


@pytest.mark.asyncio
async def test_a_merge_keeps_the_lock_order_of_ticket_changes(hub: Hub, database_url: str) -> None:
    """A ticket change holds its conversation's row, then writes an event
    naming the contact; a merge moving that conversation meanwhile waits
    for it and moves the event. Neither deadlocks: the merge holds the
    contact only after the conversations (a merge that held it first, then
    waited on the conversation, would deadlock with this change)."""
    _skip_unless_postgresql(database_url)
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.conversations import transactions as conversations_tx

    kept = await hub.inbound({"from": "lock-keeper", "text": "hello", "id": "lk-1"})
    gone = await hub.inbound({"from": "lock-goer", "text": "hello", "id": "lg-1"})
    target = await _contact_of(hub, kept["received"][0]["message_id"])
    source = await _contact_of(hub, gone["received"][0]["message_id"])
    conversation_id = (await hub.api("GET", f"/api/v1/messages/{gone['received'][0]['message_id']}"))["conversation_id"]

    def hold_conversation(conn: sa.Connection) -> None:
        conn.execute(
            sa.select(schema.conversations.c.id).where(schema.conversations.c.id == conversation_id).with_for_update()
        )

    def write_event(conn: sa.Connection) -> int:
        conversation = conversations_tx.get_conversation(conn, conversation_id)
        return conversations_tx.add_event(conn, conversation, "Priority changed", event="priority-changed").id

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as change:
            transaction = await change.begin()
            await change.run_sync(hold_conversation)
            merging = asyncio.create_task(
                hub.api("POST", f"/api/v1/contacts/{target}/merge", role="agent", json={"source_id": source})
            )
            assert await _not_done_yet(merging)
            event_id = await asyncio.wait_for(change.run_sync(write_event), 10)
            await transaction.commit()
        await asyncio.wait_for(merging, 10)
    finally:
        await engine.dispose()
    assert (await hub.api("GET", f"/api/v1/messages/{event_id}"))["contact_id"] == target
