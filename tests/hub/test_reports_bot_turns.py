"""The bot's turns by decision counted without COUNT DISTINCT
(``report_bot_turns.since``, kept by triggers, migration 0020), on every
database in HUB_TEST_DATABASE_URLS: for ranges that start and end between a
turn's replies, the count equals the distinct turns of the replies in the
range, after replies stored out of order, decisions missing, a deleted
reply, and the migration's fill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.reports.bot import _decisions_query
from hub.reports.params import ReportParams
from hub.reports.sql import LIVE
from hub.storage import open_database
from hub.storage.schema import messages, report_bot_turns
from tests.hub.report_timeline import Records, TimelineWriter, migrated_again

pytestmark = pytest.mark.asyncio

REVISION = "0020"
DAY = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def ranges() -> list[ReportParams]:
    """Ranges starting and ending at every few minutes of the morning."""
    found = []
    for start in range(0, 70, 5):
        for length in (3, 11, 30, 240):
            begins = DAY + timedelta(minutes=start, seconds=30)
            found.append(
                ReportParams.parse(
                    start=begins.isoformat(), end=(begins + timedelta(minutes=length)).isoformat(), tz="UTC"
                )
            )
    return found


def counted(conn: Connection) -> list[tuple[dict[Any, int], dict[Any, int]]]:
    """Per range: the report's counts, and the distinct turns of the replies in it."""
    b = report_bot_turns
    found = []
    for params in ranges():
        report = {decision: count for decision, count in conn.execute(_decisions_query(LIVE, params))}
        distinct = {
            decision: count
            for decision, count in conn.execute(
                sa.select(b.c.decision, sa.func.count(sa.distinct(b.c.turn)))
                .where(b.c.created_at >= params.start, b.c.created_at < params.end)
                .group_by(b.c.decision)
            )
        }
        found.append((report, distinct))
    return found


def bot_reply(conn: Connection, conversation_id: int, when: datetime, meta: dict[str, Any]) -> int:
    conversation = conn.execute(
        sa.text("SELECT contact_id, channel FROM conversations WHERE id = :id"), {"id": conversation_id}
    ).one()
    return conn.execute(
        sa.insert(messages)
        .values(
            conversation_id=conversation_id,
            contact_id=conversation.contact_id,
            channel=conversation.channel,
            direction="outbound",
            kind="message",
            author_kind="bot",
            body="bot says",
            attachments=[],
            meta=meta,
            delivery_status="queued",
            created_at=when,
        )
        .returning(messages.c.id)
    ).scalar_one()


async def test_turns_are_counted_once_in_every_range(database_url: str) -> None:
    records = Records(ZoneInfo("UTC"))
    ids: dict[str, int] = {}

    def timeline(conn: Connection) -> None:
        w = TimelineWriter(conn, records)
        conversation = w.conversation(w.contact("Ann"), "webchat", DAY)
        ids["conversation"] = conversation
        for minute in range(0, 60, 7):
            asked = w.customer(conversation, DAY + timedelta(minutes=minute))
            # A turn in three parts, minutes apart, so that ranges start and end between them.
            for part in range(3):
                when = DAY + timedelta(minutes=minute + 4 * part, seconds=10)
                reply = bot_reply(conn, conversation, when, {"in_reply_to": asked, "decision": {"action": "answer"}})
                if minute == 0 and part == 1:
                    ids["middle"] = reply
            bot_reply(conn, conversation, DAY + timedelta(minutes=minute + 1), {"in_reply_to": asked})  # no decision
        # Stored last, sent first: it is the turn's first reply now.
        ids["early"] = bot_reply(
            conn, conversation, DAY - timedelta(minutes=30), {"in_reply_to": asked, "decision": {"action": "answer"}}
        )
        # Two of a turn in one statement, and a reply that answers nothing (its own turn).
        rows = [
            {
                "conversation_id": conversation,
                "contact_id": conn.execute(sa.text("SELECT contact_id FROM conversations")).scalar(),
                "channel": "webchat",
                "direction": "outbound",
                "kind": "message",
                "author_kind": "bot",
                "body": "bot says",
                "attachments": [],
                "meta": {"in_reply_to": asked - 1, "decision": {"action": "clarify"}},
                "delivery_status": "queued",
                "created_at": DAY + timedelta(minutes=minutes),
            }
            for minutes in (62, 21)
        ]
        conn.execute(sa.insert(messages).values(rows))
        bot_reply(conn, conversation, DAY + timedelta(minutes=33), {"decision": {"action": "topics"}})

    db = open_database(database_url)
    try:
        await db.write(timeline)
        found = await db.read(counted)
        assert all(report == distinct for report, distinct in found)
        assert any(distinct.get("answer", 0) > 1 for _, distinct in found)
        # Deleted replies (the first of a turn, the middle one of another): the next one follows the one before.
        await db.write(
            lambda conn: conn.execute(sa.delete(messages).where(messages.c.id.in_([ids["early"], ids["middle"]])))
        )
        after = await db.read(counted)
        assert all(report == distinct for report, distinct in after)
    finally:
        await db.close()

    db = await migrated_again(database_url, REVISION)
    try:
        assert await db.read(counted) == after
        await db.write(
            lambda conn: bot_reply(
                conn,
                ids["conversation"],
                DAY + timedelta(minutes=8),
                {"in_reply_to": 1, "decision": {"action": "answer"}},
            )
        )
        assert all(report == distinct for report, distinct in await db.read(counted))
    finally:
        await db.close()
