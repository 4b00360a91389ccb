"""The first agent reply kept on each ticket by triggers (migration 0020,
``tickets.first_reply_id`` / ``first_responder_id``), on every database in
HUB_TEST_DATABASE_URLS, against the query the response-times report ran
before it existed: the conversation's first agent reply (smallest id) at or
after the ticket opened. After replies before and after a ticket, a
ticket opened after its replies were stored, a reopened conversation's
second ticket, several replies in one statement, an earlier id stored
later, a deleted reply, a merge, an erasure, and the migration's fill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.conversations import contacts as contacts_tx
from hub.storage import open_database
from hub.storage.schema import messages, tickets
from tests.hub.report_timeline import Records, TimelineWriter, migrated_again

pytestmark = pytest.mark.asyncio

REVISION = "0020"


def first_replies(conn: Connection) -> dict[int, tuple[int | None, int | None]]:
    """Each ticket's (first_reply_id, first_responder_id) as the triggers keep them."""
    t = tickets
    return {row.id: (row.first_reply_id, row.first_responder_id) for row in conn.execute(sa.select(t))}


def looked_up(conn: Connection) -> dict[int, tuple[int | None, int | None]]:
    """The same, looked up in the messages as the report did before."""
    t, m = tickets, messages
    found: dict[int, tuple[int | None, int | None]] = {}
    for ticket in conn.execute(sa.select(t.c.id, t.c.conversation_id, t.c.created_at)):
        reply = conn.execute(
            sa.select(m.c.id, m.c.author_id)
            .where(
                m.c.conversation_id == ticket.conversation_id,
                m.c.kind == "message",
                m.c.direction == "outbound",
                m.c.author_kind == "agent",
                m.c.created_at >= ticket.created_at,
            )
            .order_by(m.c.id)
            .limit(1)
        ).first()
        found[ticket.id] = (reply.id, reply.author_id) if reply is not None else (None, None)
    return found


def agent_reply(conn: Connection, conversation_id: int, agent_id: int, when: datetime, **values: Any) -> dict[str, Any]:
    contact = conn.execute(
        sa.text("SELECT contact_id, channel FROM conversations WHERE id = :id"), {"id": conversation_id}
    ).one()
    return {
        "conversation_id": conversation_id,
        "contact_id": contact.contact_id,
        "channel": contact.channel,
        "direction": "outbound",
        "kind": "message",
        "author_kind": "agent",
        "author_id": agent_id,
        "body": "agent here",
        "attachments": [],
        "meta": {},
        "delivery_status": "queued",
        "created_at": when,
        **values,
    }


async def test_each_ticket_keeps_its_first_agent_reply(database_url: str) -> None:
    zone = ZoneInfo("Europe/Berlin")
    records = Records(zone)
    ids: dict[str, int] = {}
    opened = datetime(2026, 5, 4, 10, 0, tzinfo=zone)

    def timeline(conn: Connection) -> None:
        w = TimelineWriter(conn, records)
        ada, bob = w.agent("Ada"), w.agent("Bob")
        ids.update(ada=ada, bob=bob)
        # c1: a reply before the ticket (not its first), Bob's then Ada's after it; then a second cycle.
        ids["anna"] = anna = w.contact("Anna")
        c1 = w.conversation(anna, "webchat", opened)
        w.customer(c1, opened)
        w.reply(c1, ada, opened + timedelta(minutes=1))
        ids["t1"] = t1 = w.handoff(c1, opened + timedelta(minutes=5))
        w.note(c1, ada, opened + timedelta(minutes=6))
        w.reply(c1, bob, opened + timedelta(minutes=10))
        w.reply(c1, ada, opened + timedelta(minutes=12))
        w.resolve(t1, bob, opened + timedelta(minutes=20))
        w.reopen(c1, opened + timedelta(hours=2))
        ids["t2"] = w.handoff(c1, opened + timedelta(hours=2, minutes=1))
        w.reply(c1, ada, opened + timedelta(hours=2, minutes=30))
        # c2: the replies are stored before the ticket that opened before them.
        ids["ben"] = ben = w.contact("Ben")
        c2 = w.conversation(ben, "sms", opened)
        w.customer(c2, opened)
        w.reply(c2, bob, opened + timedelta(minutes=30))
        w.reply(c2, ada, opened + timedelta(minutes=40))
        ids["t3"] = w.handoff(c2, opened + timedelta(minutes=20))
        # c3: two replies in one statement (one statement trigger on PostgreSQL); a ticket never answered.
        ids["cleo"] = cleo = w.contact("Cleo")
        c3 = w.conversation(cleo, "email", opened)
        w.customer(c3, opened)
        ids["t4"] = w.handoff(c3, opened + timedelta(minutes=1))
        conn.execute(
            sa.insert(messages).values(
                [
                    agent_reply(conn, c3, bob, opened + timedelta(minutes=3)),
                    agent_reply(conn, c3, ada, opened + timedelta(minutes=2)),
                ]
            )
        )
        ids["c4"] = c4 = w.conversation(cleo, "email", opened + timedelta(days=1))
        w.customer(c4, opened + timedelta(days=1))
        ids["t5"] = w.handoff(c4, opened + timedelta(days=1, minutes=1))
        ids["c3"] = c3

    db = open_database(database_url)
    try:
        await db.write(timeline)
        kept = await db.read(first_replies)
        assert kept == await db.read(looked_up)
        assert [kept[ids[t]][1] for t in ("t1", "t2", "t3", "t4", "t5")] == [
            ids["bob"],
            ids["ada"],
            ids["bob"],
            ids["bob"],  # the smaller id of the two, though Ada's is the earlier time
            None,
        ]

        # An earlier id committed after a later one (concurrent writers on PostgreSQL) takes its place.
        def out_of_order(conn: Connection) -> None:
            top = conn.execute(sa.select(sa.func.max(messages.c.id))).scalar_one()
            later = agent_reply(conn, ids["c4"], ids["bob"], opened + timedelta(days=1, minutes=9), id=top + 1000)
            earlier = agent_reply(conn, ids["c4"], ids["ada"], opened + timedelta(days=1, minutes=8), id=top + 500)
            conn.execute(sa.insert(messages).values(later))
            conn.execute(sa.insert(messages).values(earlier))

        await db.write(out_of_order)
        kept = await db.read(first_replies)
        assert kept == await db.read(looked_up)
        assert kept[ids["t5"]][1] == ids["ada"]

        # A deleted first reply: the next one takes its place, or none.
        first = kept[ids["t1"]][0]
        await db.write(lambda conn: conn.execute(sa.delete(messages).where(messages.c.id == first)))
        kept = await db.read(first_replies)
        assert kept == await db.read(looked_up)
        assert kept[ids["t1"]][1] == ids["ada"]

        # A merge moves the rows, not the replies; an erasure takes the tickets with them.
        await db.write(
            lambda conn: contacts_tx.merge_contacts(conn, source_id=ids["ben"], target_id=ids["anna"], reason="same")
        )
        await db.write(contacts_tx.erase_contact, ids["cleo"])
        kept = await db.read(first_replies)
        assert kept == await db.read(looked_up)
        assert set(kept) == {ids["t1"], ids["t2"], ids["t3"]}
    finally:
        await db.close()

    # Back to the schema before the columns, and forward again: the migration fills them.
    db = await migrated_again(database_url, REVISION)
    try:
        refilled = await db.read(first_replies)
        assert refilled == kept
        later = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)
        await db.write(lambda conn: conn.execute(sa.insert(messages).values(agent_reply(conn, 1, ids["bob"], later))))
        assert await db.read(first_replies) == await db.read(looked_up)
    finally:
        await db.close()
