"""The volume report read from its quarter-hour rollup (``hub.reports.rollups``),
on every database in HUB_TEST_DATABASE_URLS, against figures known by
construction (``tests/hub/report_timeline.py``): a range that starts and
ends inside quarter-hours, zones 30 and 45 minutes off the hour and their
DST changes, a zone off the quarter-hour grid, and rows stored before the
rollup existed (the migration fills it)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.conversations import contacts as contacts_tx
from hub.events import Clock
from hub.reports.params import Bucketing, ReportParams
from hub.reports.rollups import on_quarter_grid, split
from hub.reports.service import ReportService
from hub.storage import Database, open_database
from tests.hub.report_timeline import Records, TimelineWriter, migrated_again

pytestmark = pytest.mark.asyncio

ROLLUP_REVISION = "0019"
FIGURES = ("inbound", "outbound", "outbound_bot", "outbound_agent", "new_conversations")


class FixedClock(Clock):
    def now(self) -> datetime:
        return datetime(2026, 12, 1, tzinfo=UTC)


async def volume(db: Database, start: str, end: str, tz: str, bucket: str = "day") -> dict[str, Any]:
    service = ReportService(db, hours=None, clock=FixedClock())
    return await service.run("volume", ReportParams.parse(start=start, end=end, tz=tz, bucket=bucket))


def seen(figures: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    """The report's non-zero (bucket, channel, figure) counts."""
    found: Counter[tuple[str, str, str]] = Counter()
    for row in figures["series"]:
        if row["channel"] != "all":
            for figure in FIGURES:
                if row[figure]:
                    found[(row["bucket"], row["channel"], figure)] = row[figure]
    return dict(found)


def expected(records: Records) -> dict[tuple[str, str, str], int]:
    return {key: count for key, count in records.volume.items() if count}


def hour_label(moment: datetime, zone: ZoneInfo) -> str:
    """The local hour a moment falls in, as a report labels it (zones without DST)."""
    return moment.astimezone(zone).replace(minute=0, second=0, microsecond=0).isoformat()


async def test_a_range_inside_quarter_hours_counts_its_edges_from_the_rows(database_url: str) -> None:
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 4, 1, 9, 5, 30, 250000, tzinfo=zone)
    end = datetime(2026, 4, 1, 17, 55, 10, tzinfo=zone)
    times = [
        datetime(2026, 4, 1, 9, 1, tzinfo=zone),  # before the range, in its first quarter-hour
        start - timedelta(microseconds=1),
        start,  # the range's first instant counts
        datetime(2026, 4, 1, 9, 14, 59, 999999, tzinfo=zone),
        datetime(2026, 4, 1, 9, 15, tzinfo=zone),  # the first whole quarter-hour
        datetime(2026, 4, 1, 12, 0, tzinfo=zone),
        datetime(2026, 4, 1, 17, 44, 59, tzinfo=zone),  # the last whole quarter-hour
        datetime(2026, 4, 1, 17, 45, tzinfo=zone),  # the last, partial, quarter-hour
        end - timedelta(microseconds=1),
        end,  # ``to`` is exclusive
        datetime(2026, 4, 1, 17, 59, tzinfo=zone),
    ]
    counted: Counter[tuple[str, str, str]] = Counter()

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, Records(zone))
        for index, moment in enumerate(times):
            channel = ("webchat", "sms")[index % 2]
            conversation = w.conversation(w.contact(f"C{index}"), channel, moment)  # and its first message
            w.bot(conversation, moment + timedelta(seconds=1), "answer", in_reply_to=0)
            if start <= moment < end:
                counted[(hour_label(moment, zone), channel, "new_conversations")] += 1
                counted[(hour_label(moment, zone), channel, "inbound")] += 1
            if start <= moment + timedelta(seconds=1) < end:
                for figure in ("outbound", "outbound_bot"):
                    counted[(hour_label(moment + timedelta(seconds=1), zone), channel, figure)] += 1

    db = open_database(database_url)
    try:
        await db.write(write)
        figures = await volume(db, start.isoformat(), end.isoformat(), "Europe/Berlin", bucket="hour")
        params = ReportParams.parse(start=start.isoformat(), end=end.isoformat(), tz="Europe/Berlin", bucket="hour")
        parts = split(Bucketing(params))
        assert parts.quarters is not None and len(parts.edges) == 2  # both ways of counting are in play
        assert seen(figures) == dict(counted)
        assert figures["totals"][0]["inbound"] == 7
        assert figures["totals"][0]["outbound_bot"] == 7  # the reply to ``start - 1 µs`` is in, to ``end - 1 µs`` out
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("tz", "bucket", "moments"),
    [
        # +05:45 all year: local hours start at :15 UTC.
        (
            "Asia/Kathmandu",
            "hour",
            [
                datetime(2026, 5, 4, h, m, tzinfo=UTC)
                for h, m in ((3, 14), (3, 15), (3, 16), (4, 14), (18, 14), (18, 15))
            ],
        ),
        # +12:45, +13:45 from 02:45 on the last Sunday of September (2026-09-27).
        (
            "Pacific/Chatham",
            "day",
            [datetime(2026, 9, 26, h, m, tzinfo=UTC) for h, m in ((11, 14), (11, 15), (13, 59), (14, 0), (10, 15))],
        ),
        # +10:30, +11:00 from 02:00 on the first Sunday of October (2026-10-04): a half-hour change.
        (
            "Australia/Lord_Howe",
            "day",
            [datetime(2026, 10, 3, h, m, tzinfo=UTC) for h, m in ((13, 29), (13, 30), (15, 29), (15, 30), (12, 59))],
        ),
        # India +05:30, weeks (Monday first).
        (
            "Asia/Kolkata",
            "week",
            [datetime(2026, 6, 7, 18, 29, tzinfo=UTC), datetime(2026, 6, 7, 18, 30, tzinfo=UTC)],
        ),
    ],
)
async def test_zones_off_the_hour_and_their_changes(
    database_url: str, tz: str, bucket: str, moments: list[datetime]
) -> None:
    zone = ZoneInfo(tz)
    records = Records(zone)

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        for index, moment in enumerate(moments):
            w.conversation(w.contact(f"C{index}"), "email", moment)  # and its first message

    db = open_database(database_url)
    try:
        await db.write(write)
        first, last = min(moments), max(moments)
        start = datetime.combine(first.astimezone(zone).date() - timedelta(days=7), datetime.min.time(), zone)
        end = datetime.combine(last.astimezone(zone).date() + timedelta(days=7), datetime.min.time(), zone)
        if bucket == "hour":
            start, end = start + timedelta(days=6), end - timedelta(days=6)
        figures = await volume(db, start.isoformat(), end.isoformat(), tz, bucket=bucket)
        params = ReportParams.parse(start=start.isoformat(), end=end.isoformat(), tz=tz, bucket=bucket)
        assert on_quarter_grid(Bucketing(params))
        if bucket == "hour":
            want: Counter[tuple[str, str, str]] = Counter()
            for moment in moments:
                for figure in ("inbound", "new_conversations"):
                    want[(hour_label(moment, zone), "email", figure)] += 1
            assert seen(figures) == dict(want)
        elif bucket == "day":
            assert seen(figures) == expected(records)
        else:
            mondays: Counter[tuple[str, str, str]] = Counter()
            for (day, channel, figure), count in records.volume.items():
                monday = datetime.fromisoformat(day).date()
                mondays[((monday - timedelta(days=monday.weekday())).isoformat(), channel, figure)] += count
            assert seen(figures) == {key: count for key, count in mondays.items() if count}
        assert figures["totals"][0]["inbound"] == len(moments)
    finally:
        await db.close()


async def test_a_zone_off_the_quarter_hour_grid_is_counted_from_the_rows(database_url: str) -> None:
    """Monrovia kept -00:44:30 until 1972-01-07: 00:44:40 UTC is 00:00:10 of
    the next local day, though its quarter-hour began on the day before."""
    zone = ZoneInfo("Africa/Monrovia")
    records = Records(zone)
    moments = [datetime(1971, 6, 2, 0, 44, 40, tzinfo=UTC), datetime(1971, 6, 2, 0, 44, 20, tzinfo=UTC)]

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        for index, moment in enumerate(moments):
            w.conversation(w.contact(f"C{index}"), "sms", moment)

    db = open_database(database_url)
    try:
        await db.write(write)
        params = ReportParams.parse(start="1971-05-30", end="1971-06-05", tz="Africa/Monrovia")
        assert not on_quarter_grid(Bucketing(params))
        figures = await volume(db, "1971-05-30", "1971-06-05", "Africa/Monrovia")
        assert seen(figures) == expected(records)
        assert {key[0] for key in seen(figures)} == {"1971-06-01", "1971-06-02"}
    finally:
        await db.close()


async def test_the_migration_counts_what_was_stored_before_it(database_url: str) -> None:
    """Rows written (and a contact erased) before the rollups existed are in
    them once the migration has run; rows written after are added by the triggers."""
    zone = ZoneInfo("Europe/Berlin")
    records = Records(zone)
    ids: dict[str, int] = {}

    def before(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        for name, channel, day in (("Kept", "webchat", 3), ("Erased", "sms", 4)):
            contact = w.contact(name)
            opened = datetime(2026, 5, day, 10, 0, tzinfo=zone)
            conversation = w.conversation(contact, channel, opened)
            asked = w.customer(conversation, opened)
            w.bot(conversation, opened + timedelta(minutes=1), "answer", in_reply_to=asked, parts=2)
            ids[name] = contact

    def after(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        opened = datetime(2026, 5, 5, 23, 50, tzinfo=zone)
        w.customer(w.conversation(w.contact("Later"), "email", opened), opened + timedelta(minutes=20))

    db = open_database(database_url)
    try:
        await db.write(before)
        await db.write(contacts_tx.erase_contact, ids["Erased"])
    finally:
        await db.close()
    # Back to the schema before the rollups (they go), and forward again: the migration fills them.
    db = await migrated_again(database_url, ROLLUP_REVISION)
    try:
        await db.write(after)
        figures = await volume(db, "2026-05-01", "2026-05-08", "Europe/Berlin")
        assert seen(figures) == expected(records)
        assert figures["totals"][0]["outbound_bot"] == 4
        assert figures["totals"][0]["new_conversations"] == 3
        # SQLite gave the erased conversation's id to "Later": the erased one's facts stay its own.
        bot = await ReportService(db, hours=None, clock=FixedClock()).run(
            "bot", ReportParams.parse(start="2026-05-01", end="2026-05-08", tz="Europe/Berlin")
        )
        totals = bot["totals"][0]
        assert (totals["conversations"], totals["bot_handled"], totals["contained"]) == (3, 2, 2)
        assert totals["automated_resolutions"] == 2
        assert totals["bot_turns"] == 2  # one of two parts each, the erased one's from what the erasure kept
        assert bot["groups"]["decision"] == [{"decision": "answer", "turns": 2, "share": 1.0}]
    finally:
        await db.close()


async def test_an_erased_conversations_bot_facts_stay_its_own(database_url: str) -> None:
    """The bot report's facts of an erased conversation stay as they were,
    and a conversation opened after it (on SQLite, with the same id) gets its own."""
    zone = ZoneInfo("Europe/Berlin")
    records = Records(zone)
    opened = datetime(2026, 5, 4, 10, 0, tzinfo=zone)
    ids: dict[str, int] = {}

    def erased_one(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        contact = w.contact("Erased")
        conversation = w.conversation(contact, "sms", opened)
        w.bot(conversation, opened + timedelta(minutes=1), "answer", in_reply_to=0)
        ids.update(contact=contact, conversation=conversation)

    def next_one(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        conversation = w.conversation(w.contact("Next"), "sms", opened + timedelta(hours=1))
        w.reply(conversation, w.agent("Ada"), opened + timedelta(hours=2))
        ids["next"] = conversation

    db = open_database(database_url)
    try:
        await db.write(erased_one)
        await db.write(contacts_tx.erase_contact, ids["contact"])
        await db.write(next_one)
        if database_url.startswith("sqlite"):
            assert ids["next"] == ids["conversation"]  # the case this test is about
        bot = await ReportService(db, hours=None, clock=FixedClock()).run(
            "bot", ReportParams.parse(start="2026-05-01", end="2026-05-08", tz="Europe/Berlin")
        )
        totals = bot["totals"][0]
        assert (totals["conversations"], totals["bot_handled"], totals["contained"]) == (2, 1, 1)
        assert totals["automated_resolutions"] == 1
    finally:
        await db.close()
