"""The agents report read from its quarter-hour rollup (``report_agent_quarters``,
migration 0020), on every database in HUB_TEST_DATABASE_URLS: replies and
notes counted from the rows' own times (a range that starts and ends inside
quarter-hours, by hour and by day), unchanged by a merge and an erasure, and
the same after the migration fills the rollup from what was stored."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Connection

from hub.conversations import contacts as contacts_tx
from hub.events import Clock
from hub.reports.params import ReportParams
from hub.reports.service import ReportService
from hub.storage import Database, open_database
from tests.hub.report_timeline import Records, TimelineWriter, migrated_again

pytestmark = pytest.mark.asyncio

REVISION = "0020"
ZONE = ZoneInfo("Asia/Kolkata")  # +05:30: local hours are not UTC hours


class FixedClock(Clock):
    def now(self) -> datetime:
        return datetime(2026, 12, 1, tzinfo=UTC)


async def agents(db: Database, start: str, end: str, bucket: str) -> dict[tuple[str, Any], tuple[int, int]]:
    """The report's non-zero (replies, notes) by (bucket, agent)."""
    figures = await ReportService(db, hours=None, clock=FixedClock()).run(
        "agents", ReportParams.parse(start=start, end=end, tz=str(ZONE), bucket=bucket)
    )
    return {
        (row["bucket"], row["agent"]): (row["replies"], row["notes"])
        for row in figures["series"]
        if row["agent"] != "all" and (row["replies"] or row["notes"])
    }


def counted(
    written: list[tuple[datetime, int, str]], start: datetime, end: datetime, bucket: str
) -> dict[tuple[str, Any], tuple[int, int]]:
    """What the report should say, from the writes' own times."""
    found: Counter[tuple[str, Any, str]] = Counter()
    for when, agent, figure in written:
        if start <= when < end:
            local = when.astimezone(ZONE)
            label = local.date().isoformat() if bucket == "day" else local.replace(minute=0, second=0).isoformat()
            found[(label, agent, figure)] += 1
    keys = {(label, agent) for label, agent, _ in found}
    return {key: (found[(*key, "replies")], found[(*key, "notes")]) for key in keys}


async def test_replies_and_notes_per_quarter_hour(database_url: str) -> None:
    records = Records(ZONE)
    ids: dict[str, int] = {}
    written: list[tuple[datetime, int, str]] = []
    day = datetime(2026, 5, 4, 9, 0, tzinfo=ZONE)

    def timeline(conn: Connection) -> None:
        w = TimelineWriter(conn, records)
        ada, bob = w.agent("Ada"), w.agent("Bob")
        ids.update(ada=ada, bob=bob)
        for name, minutes in (("Kept", (2, 14, 15, 16, 59, 61)), ("Merged", (29, 30, 44)), ("Erased", (3, 45, 121))):
            contact = w.contact(name)
            ids[name] = contact
            conversation = w.conversation(contact, "webchat", day)
            w.customer(conversation, day)
            for index, minute in enumerate(minutes):
                agent = ada if index % 2 else bob
                when = day + timedelta(minutes=minute, seconds=7 * index)
                if index % 3 == 2:
                    w.note(conversation, agent, when)
                    written.append((when, agent, "notes"))
                else:
                    w.reply(conversation, agent, when)
                    written.append((when, agent, "replies"))

    db = open_database(database_url)
    try:
        await db.write(timeline)
        # Local 09:07:30 to 10:52:10: neither end on a quarter-hour.
        start, end = day + timedelta(minutes=7, seconds=30), day + timedelta(minutes=112, seconds=10)
        ranges = [
            (start.isoformat(), end.isoformat(), "hour", start, end),
            ("2026-05-04", "2026-05-05", "day", day.replace(hour=0), day.replace(hour=0) + timedelta(days=1)),
        ]
        before = {}
        for text_start, text_end, bucket, start_at, end_at in ranges:
            before[bucket] = await agents(db, text_start, text_end, bucket)
            assert before[bucket] == counted(written, start_at, end_at, bucket)
        assert sum(sum(pair) for pair in before["day"].values()) == len(written)

        await db.write(
            lambda conn: contacts_tx.merge_contacts(conn, source_id=ids["Merged"], target_id=ids["Kept"], reason="same")
        )
        await db.write(contacts_tx.erase_contact, ids["Erased"])
        for text_start, text_end, bucket, _, _ in ranges:
            assert await agents(db, text_start, text_end, bucket) == before[bucket]
    finally:
        await db.close()

    # Back to the schema before the rollup, and forward again: the migration fills it.
    db = await migrated_again(database_url, REVISION)
    try:
        for text_start, text_end, bucket, _, _ in ranges:
            assert await agents(db, text_start, text_end, bucket) == before[bucket]
        later = day + timedelta(minutes=50)

        def one_more(conn: Connection) -> None:
            w = TimelineWriter(conn, records)
            conversation = w.conversation(ids["Kept"], "email", later)
            w.reply(conversation, ids["ada"], later)

        await db.write(one_more)
        written.append((later, ids["ada"], "replies"))
        after = await agents(db, "2026-05-04", "2026-05-05", "day")
        assert after == counted(written, day.replace(hour=0), day.replace(hour=0) + timedelta(days=1), "day")
    finally:
        await db.close()
