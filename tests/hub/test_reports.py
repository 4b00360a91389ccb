"""Reports on a generated timeline whose figures are known by construction
(``tests/hub/report_timeline.py`` records what it made), on every database
in HUB_TEST_DATABASE_URLS: DST changes, a conversation across midnight,
business hours, a reopened conversation, merged and erased contacts."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from hub.conversations import contacts as contacts_tx
from hub.reports.params import ReportParams
from hub.reports.service import ReportService
from hub.storage import Database, open_database
from hub.storage.schema import report_erased_conversations, report_erased_messages, report_erased_tickets
from hub.tickets.sla import BusinessHours
from tests.hub.report_timeline import Records, TimelineWriter

pytestmark = pytest.mark.asyncio

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


async def report(
    db: Database,
    name: str,
    start: str,
    end: str,
    tz: str,
    *,
    bucket: str = "day",
    hours: BusinessHours | None = None,
    now: datetime = datetime(2026, 6, 1, tzinfo=UTC),
    **filters: Any,
) -> dict[str, Any]:
    service = ReportService(db, hours=hours, clock=FixedClock(now))
    params = ReportParams.parse(start=start, end=end, tz=tz, bucket=bucket, **filters)
    return await service.run(name, params)


def p90(values: list[float]) -> float:
    """The 90th percentile, interpolated (statistics' "inclusive" method is
    PostgreSQL's percentile_cont)."""
    return values[0] if len(values) == 1 else statistics.quantiles(values, n=10, method="inclusive")[8]


class Scenario:
    """Europe/Berlin around the last Sunday of March 2026 (clocks go from
    02:00 to 03:00 on the 29th): a conversation across midnight, a ticket
    whose first response crosses the DST change, a reopened conversation,
    a customer to erase and one to merge."""

    def __init__(self) -> None:
        self.records = Records(BERLIN)
        self.ids: dict[str, int] = {}

    def write(self, conn: Any) -> None:
        w = TimelineWriter(conn, self.records)
        ids = self.ids
        ada, ben = w.agent("Ada", team="support"), w.agent("Ben", team="billing")
        ids.update(ada=ada, ben=ben)
        carla, dan, eve, finn = (w.contact(n) for n in ("Carla Customer", "Dan Doe", "Eve Erased", "Finn Merged"))
        ids.update(carla=carla, dan=dan, eve=eve, finn=finn)

        # c1 spans midnight: Saturday 23:50 -> Sunday 00:10, handed off, answered in 5 min, resolved in 60.
        c1 = w.conversation(carla, "webchat", "2026-03-28 23:50", "where is my order")
        first = conn.execute(sa.text("select max(id) from messages")).scalar()
        w.bot(c1, "2026-03-28 23:51", "answer", first)
        second = w.customer(c1, "2026-03-29 00:10", "I want a person")
        w.bot(c1, "2026-03-29 00:11", "handoff", second)
        t1 = w.handoff(c1, "2026-03-29 00:11", source="bot", reason="customer-request", team="support")
        w.claim(t1, ada, "2026-03-29 00:12")
        w.reply(c1, ada, "2026-03-29 00:16")
        w.resolve(t1, ada, "2026-03-29 01:11")

        # c2: a keyword rule's ticket at 01:55 CET, answered at 03:05 CEST: 10 minutes, not 70.
        c2 = w.conversation(dan, "email", "2026-03-29 01:30", "refund please")
        t2 = w.handoff(
            c2, "2026-03-29 01:55", source="rule", reason="matched 'refund' rule", team="billing", priority="high"
        )
        w.claim(t2, ben, "2026-03-29 01:56")
        w.reply(c2, ben, "2026-03-29 03:05")
        w.resolve(t2, ben, "2026-03-29 05:05")  # 130 minutes (04:05 - 01:55 on the wall, minus the lost hour)

        # c3: Eve's urgent SMS, to be erased: answered in 40 min, a note, resolved in 60.
        c3 = w.conversation(eve, "sms", "2026-03-29 10:00", "my account was hacked, Eve here")
        message = conn.execute(sa.text("select max(id) from messages")).scalar()
        w.bot(c3, "2026-03-29 10:05", "handoff", message)
        t3 = w.handoff(
            c3, "2026-03-29 10:05", source="bot", reason="urgent-issue; matched 'hacked' rule", priority="urgent"
        )
        w.claim(t3, ada, "2026-03-29 10:06")
        w.reply(c3, ada, "2026-03-29 10:45", "Eve, we locked it")
        w.note(c3, ada, "2026-03-29 10:50")
        w.resolve(t3, ada, "2026-03-29 11:05")

        # c4: Finn's, to be merged into Carla: the bot answers and nobody else is needed.
        c4 = w.conversation(finn, "webchat", "2026-03-29 12:00", "opening hours?")
        message = conn.execute(sa.text("select max(id) from messages")).scalar()
        w.bot(c4, "2026-03-29 12:01", "answer", message)

        # c5: the bot only asks back (two messages in one turn), then lists topics: contained, not resolved by an answer.
        c5 = w.conversation(carla, "webchat", "2026-03-29 14:00", "hmm")
        message = conn.execute(sa.text("select max(id) from messages")).scalar()
        w.bot(c5, "2026-03-29 14:01", "clarify", message, parts=2)
        again = w.customer(c5, "2026-03-29 14:02", "the thing")
        w.bot(c5, "2026-03-29 14:03", "topics", again)

        # c1 reopened on Monday: a second cycle, measured from its own handoff (20 min, 60 min).
        back = w.reopen(c1, "2026-03-30 09:00")
        w.bot(c1, "2026-03-30 09:02", "handoff", back)
        t4 = w.handoff(c1, "2026-03-30 09:02", source="bot", reason="complaint", team="support")
        w.claim(t4, ada, "2026-03-30 09:03")
        w.reply(c1, ada, "2026-03-30 09:22")
        w.resolve(t4, ada, "2026-03-30 10:02")

        # c6: 23:30 on Monday, its next message at 00:30 on Tuesday (22:30 UTC on Monday); an agent
        # answers without a ticket, so the bot did not contain it.
        c6 = w.conversation(dan, "webchat", "2026-03-30 23:30")
        w.customer(c6, "2026-03-31 00:30")
        w.reply(c6, ben, "2026-03-31 00:40")
        ids.update(c1=c1, c2=c2, c3=c3, c4=c4, c5=c5, c6=c6, t1=t1, t2=t2, t3=t3, t4=t4)


RANGE = ("2026-03-28", "2026-04-01", "Europe/Berlin")


async def generated(database_url: str) -> tuple[Database, Scenario]:
    db = open_database(database_url)
    scenario = Scenario()
    await db.write(scenario.write)
    return db, scenario


def check_volume(figures: dict[str, Any], records: Records) -> None:
    expected = {key: count for key, count in records.volume.items() if count}
    seen: Counter[tuple[str, str, str]] = Counter()
    for row in figures["series"]:
        if row["channel"] == "all":
            continue
        for figure in ("inbound", "outbound", "outbound_bot", "outbound_agent", "new_conversations"):
            if row[figure]:
                seen[(row["bucket"], row["channel"], figure)] = row[figure]
    assert dict(seen) == expected
    assert figures["totals"][0]["inbound"] == sum(c for (_, _, f), c in expected.items() if f == "inbound")


def check_times(figures: dict[str, Any], records: Records) -> None:
    cycles = list(records.cycles.values())
    first = [c["first_response_s"] for c in cycles if c["first_response_s"] is not None]
    resolution = [c["resolution_s"] for c in cycles if c["resolution_s"] is not None]
    totals = figures["totals"][0]
    assert totals["tickets"] == len(cycles) == 4
    assert totals["reopened"] == 1
    assert sorted(first) == [300, 600, 1200, 2400]  # 5, 10 (across the DST change), 20, 40 minutes
    assert totals["first_response_median_s"] == pytest.approx(statistics.median(first))
    assert totals["first_response_p90_s"] == pytest.approx(p90(first))
    assert totals["resolution_median_s"] == pytest.approx(statistics.median(resolution))
    assert totals["resolution_p90_s"] == pytest.approx(p90(resolution))
    by_day = {row["bucket"]: row for row in figures["series"]}
    for day in ("2026-03-29", "2026-03-30"):
        values = [c["first_response_s"] for c in cycles if c["day"] == day]
        assert by_day[day]["tickets"] == len(values)
        assert by_day[day]["first_response_median_s"] == pytest.approx(statistics.median(values))
    assert by_day["2026-03-29"]["first_response_p90_s"] == pytest.approx(p90([300, 600, 2400]))
    assert by_day["2026-03-28"]["tickets"] == 0 and by_day["2026-03-31"]["tickets"] == 0
    for dimension in ("channel", "team", "priority"):
        rows = {row[dimension]: row for row in figures["groups"][dimension]}
        for value in {c[dimension] for c in cycles}:
            mine = [c for c in cycles if c[dimension] == value]
            assert rows[value]["tickets"] == len(mine)
            assert rows[value]["first_response_median_s"] == pytest.approx(
                statistics.median([c["first_response_s"] for c in mine])
            )
            assert rows[value]["resolution_median_s"] == pytest.approx(
                statistics.median([c["resolution_s"] for c in mine])
            )
    agents = {row["agent"]: row for row in figures["groups"]["agent"]}
    for agent in {c["responder"] for c in cycles}:
        answered = [c["first_response_s"] for c in cycles if c["responder"] == agent]
        resolved = [c["resolution_s"] for c in cycles if c["assignee"] == agent]
        assert agents[agent]["first_response_count"] == len(answered)
        assert agents[agent]["first_response_median_s"] == pytest.approx(statistics.median(answered))
        assert agents[agent]["resolution_median_s"] == pytest.approx(statistics.median(resolved))


def check_bot(figures: dict[str, Any]) -> None:
    totals = figures["totals"][0]
    # c1..c6; the bot replied in c1, c3, c4, c5; c1, c2, c3 were handed off;
    # c4 and c5 contained, c4 with an answer; c6 had an agent and no bot.
    assert {
        k: totals[k] for k in ("conversations", "bot_handled", "handed_off", "contained", "automated_resolutions")
    } == {
        "conversations": 6,
        "bot_handled": 4,
        "handed_off": 3,
        "contained": 2,
        "automated_resolutions": 1,
    }
    assert totals["containment_rate"] == 0.5
    assert totals["automated_resolution_rate"] == 0.25
    assert totals["handoff_rate"] == 0.5
    assert {r["reason"]: r["handoffs"] for r in figures["groups"]["reason"]} == {
        "customer-request": 1,
        "keyword-rule": 1,
        "urgent-issue": 1,
        "complaint": 1,
    }
    # Turns, not messages: c5's two-message clarification is one turn.
    assert {r["decision"]: r["turns"] for r in figures["groups"]["decision"]} == {
        "answer": 2,
        "handoff": 3,
        "clarify": 1,
        "topics": 1,
    }
    by_day = {row["bucket"]: row for row in figures["series"]}
    assert by_day["2026-03-28"]["conversations"] == 1  # c1 began at 23:50 on Saturday
    assert by_day["2026-03-29"]["conversations"] == 4
    assert by_day["2026-03-30"]["conversations"] == 1


def check_agents(figures: dict[str, Any], records: Records) -> None:
    seen = {
        (row["bucket"], row["agent"], figure): row[figure]
        for row in figures["series"]
        if row["agent"] != "all"
        for figure in ("replies", "notes", "claims", "resolves")
        if row[figure]
    }
    assert seen == {key: count for key, count in records.agents.items() if count}


async def all_reports(db: Database) -> dict[str, Any]:
    return {name: await report(db, name, *RANGE) for name in ("volume", "response-times", "sla", "bot", "agents")}


async def test_reports_on_a_generated_timeline(database_url: str) -> None:
    db, scenario = await generated(database_url)
    try:
        figures = await all_reports(db)
        check_volume(figures["volume"], scenario.records)
        check_times(figures["response-times"], scenario.records)
        check_bot(figures["bot"])
        check_agents(figures["agents"], scenario.records)
        # c6's second message, 00:30 on Tuesday in Berlin, is 22:30 on Monday in UTC.
        volume = {(r["bucket"], r["channel"]): r for r in figures["volume"]["series"]}
        assert volume[("2026-03-31", "webchat")]["inbound"] == 1
        utc = await report(db, "volume", "2026-03-28", "2026-04-01", "UTC")
        utc_rows = {(r["bucket"], r["channel"]): r for r in utc["series"]}
        assert utc_rows[("2026-03-30", "webchat")]["inbound"] == 3  # c1's reopening, c6's two
        assert utc_rows[("2026-03-31", "webchat")]["inbound"] == 0
    finally:
        await db.close()


async def test_merged_and_erased_contacts_leave_the_figures_as_they_were(database_url: str) -> None:
    db, scenario = await generated(database_url)
    try:
        before = await all_reports(db)
        ids = scenario.ids
        await db.write(
            lambda conn: contacts_tx.merge_contacts(conn, source_id=ids["finn"], target_id=ids["carla"], reason="same")
        )
        erased = await db.write(contacts_tx.erase_contact, ids["eve"])
        assert ids["c3"] in erased.conversation_ids
        after = await all_reports(db)
        assert after == before
        check_volume(after["volume"], scenario.records)
        check_times(after["response-times"], scenario.records)
        check_bot(after["bot"])
        check_agents(after["agents"], scenario.records)
        # What was kept names nobody: no contact, no text.
        for table in (report_erased_conversations, report_erased_tickets, report_erased_messages):
            assert "contact_id" not in table.c and "body" not in table.c
        kept = await db.read(
            lambda conn: [
                [str(v) for v in row]
                for table in (report_erased_conversations, report_erased_tickets, report_erased_messages)
                for row in conn.execute(sa.select(table))
            ]
        )
        assert kept and not any("Eve" in value or "hacked" in value for row in kept for value in row)
        tickets_kept = await db.read(
            lambda conn: conn.execute(sa.select(report_erased_tickets.c.reason)).scalars().all()
        )
        assert tickets_kept == ["urgent-issue"]
    finally:
        await db.close()


async def test_sla_attainment_and_breaches(database_url: str) -> None:
    records = Records(ZoneInfo("UTC"))
    ids: dict[str, int] = {}

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        agent = w.agent("Sam")
        customer = w.contact("Pat")
        minutes = timedelta(minutes=1)

        def ticket(opened: str, priority: str, first: int | None, resolution: int | None) -> int:
            conversation = w.conversation(customer, "webchat", opened)
            return w.handoff(
                conversation,
                opened,
                source="agent",
                priority=priority,
                first_response_due=first * minutes if first else None,
                resolution_due=resolution * minutes if resolution else None,
            )

        s1 = ticket("2026-05-04 09:00", "urgent", 15, 60)  # answered in 10, resolved in 50: both met
        w.reply(w_conversation(conn, s1), agent, "2026-05-04 09:10")
        w.resolve(s1, agent, "2026-05-04 09:50")
        s2 = ticket("2026-05-04 09:00", "high", 30, 120)  # answered late (breach recorded), resolved in time
        w.breach(s2, "first_response", "2026-05-04 09:30")
        w.reply(w_conversation(conn, s2), agent, "2026-05-04 09:45")
        w.resolve(s2, agent, "2026-05-04 10:40")
        ticket("2026-05-04 09:00", "normal", 60, 240)  # s3: never answered, due passed: breached; resolution pending
        s4 = ticket("2026-05-04 09:00", "normal", 60, 240)  # resolved without a reply: no first response owed
        w.resolve(s4, agent, "2026-05-04 09:20")
        ticket("2026-05-04 09:00", "low", None, None)  # s5: no policy
        ticket("2026-05-05 10:30", "normal", 60, 240)  # s6: due after the report's now: pending
        ids["agent"] = agent

    def w_conversation(conn: Any, ticket_id: int) -> int:
        return conn.execute(sa.text(f"select conversation_id from tickets where id = {int(ticket_id)}")).scalar()

    db = open_database(database_url)
    try:
        await db.write(write)
        now = datetime(2026, 5, 5, 11, 0, tzinfo=UTC)
        figures = await report(db, "sla", "2026-05-04", "2026-05-06", "UTC", now=now)
        overall = figures["totals"][0]
        assert overall["priority"] == "all"
        assert (overall["tickets"], overall["with_sla"]) == (6, 5)
        assert (
            overall["first_response_met"],
            overall["first_response_breached"],
            overall["first_response_pending"],
        ) == (1, 2, 1)
        assert overall["first_response_attainment"] == round(1 / 3, 4)
        assert (overall["resolution_met"], overall["resolution_breached"], overall["resolution_pending"]) == (3, 1, 1)
        assert overall["resolution_attainment"] == 0.75  # s3's resolution fell due at 13:00 on the 4th
        by_priority = {row["priority"]: row for row in figures["totals"][1:]}
        assert list(by_priority) == ["urgent", "high", "normal", "low"]
        assert by_priority["high"]["first_response_breached"] == 1 and by_priority["high"]["resolution_met"] == 1
        assert by_priority["low"]["with_sla"] == 0
        days = {row["bucket"]: row for row in figures["series"]}
        assert days["2026-05-04"]["tickets"] == 5 and days["2026-05-05"]["first_response_pending"] == 1
        only_high = await report(db, "sla", "2026-05-04", "2026-05-06", "UTC", now=now, priority="high")
        assert only_high["totals"][0]["tickets"] == 1
    finally:
        await db.close()


async def test_business_hours_count_only_open_hours(database_url: str) -> None:
    """Friday 16:30 to Monday 09:30 in a Monday-Friday 09:00-17:00 team is
    one business hour (across the DST change of that weekend, too)."""
    records = Records(BERLIN)

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        agent = w.agent("Ola")
        conversation = w.conversation(w.contact("Quinn"), "email", "2026-03-27 16:20")
        ticket = w.handoff(conversation, "2026-03-27 16:30", source="agent")
        w.claim(ticket, agent, "2026-03-27 16:31")
        w.reply(conversation, agent, "2026-03-30 09:30")
        w.resolve(ticket, agent, "2026-03-30 11:00")

    hours = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Berlin")
    db = open_database(database_url)
    try:
        await db.write(write)
        business = await report(
            db, "response-times", "2026-03-23", "2026-04-06", "Europe/Berlin", bucket="week", hours=hours
        )
        assert business["params"]["business_hours"] is True
        totals = business["totals"][0]
        assert totals["first_response_median_s"] == 3600  # 30 min on Friday, 30 on Monday
        assert totals["resolution_median_s"] == 9000  # and 2 h more on Monday
        assert [row["bucket"] for row in business["series"]] == ["2026-03-23", "2026-03-30"]  # ISO weeks, Mondays
        assert business["series"][0]["tickets"] == 1
        calendar = await report(db, "response-times", "2026-03-23", "2026-04-06", "Europe/Berlin", bucket="week")
        # Friday 16:30 CET to Monday 09:30 CEST on the wall is 65 h, one of which never happened.
        assert calendar["totals"][0]["first_response_median_s"] == 64 * 3600
    finally:
        await db.close()


async def test_hour_buckets_across_new_york_dst(database_url: str) -> None:
    """Clocks go back on 2026-11-01 at 02:00 EDT: 01:00-02:00 happens twice,
    two hour buckets, and the day has 25; on 2026-03-08 they skip 02:00."""
    records = Records(NEW_YORK)

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        conversation = w.conversation(w.contact("Nina"), "sms", datetime(2026, 11, 1, 5, 30, tzinfo=UTC))  # 01:30 EDT
        w.customer(conversation, datetime(2026, 11, 1, 6, 30, tzinfo=UTC))  # 01:30 EST
        spring = w.conversation(w.contact("Noah"), "sms", datetime(2026, 3, 8, 6, 59, tzinfo=UTC))  # 01:59 EST
        w.customer(spring, datetime(2026, 3, 8, 7, 0, tzinfo=UTC))  # 03:00 EDT

    db = open_database(database_url)
    try:
        await db.write(write)
        fall = await report(db, "volume", "2026-11-01", "2026-11-02", "America/New_York", bucket="hour")
        rows = [r for r in fall["series"] if r["channel"] == "all"]
        assert len(rows) == 25
        inbound = {r["bucket"]: r["inbound"] for r in rows if r["inbound"]}
        assert inbound == {"2026-11-01T01:00:00-04:00": 1, "2026-11-01T01:00:00-05:00": 1}
        day = await report(db, "volume", "2026-11-01", "2026-11-02", "America/New_York")
        assert [(r["bucket"], r["inbound"]) for r in day["series"] if r["channel"] == "all"] == [("2026-11-01", 2)]
        spring = await report(db, "volume", "2026-03-08", "2026-03-09", "America/New_York", bucket="hour")
        rows = [r for r in spring["series"] if r["channel"] == "all"]
        assert len(rows) == 23
        assert {r["bucket"]: r["inbound"] for r in rows if r["inbound"]} == {
            "2026-03-08T01:00:00-05:00": 1,
            "2026-03-08T03:00:00-04:00": 1,
        }
        both = await report(db, "volume", "2026-03-01", "2026-12-01", "America/New_York", bucket="week")
        assert sum(r["inbound"] for r in both["series"] if r["channel"] == "all") == 4
        check_volume(both, _weekly(records))
    finally:
        await db.close()


def _weekly(records: Records) -> Records:
    """The records by ISO week (its Monday), as a week-bucketed report shows them."""
    weekly = Records(records.zone)
    for (day, channel, figure), count in records.volume.items():
        monday = datetime.fromisoformat(day).date()
        monday -= timedelta(days=monday.weekday())
        weekly.volume[(monday.isoformat(), channel, figure)] += count
    return weekly


async def test_berlin_october_change_and_midnight(database_url: str) -> None:
    """The last Sunday of October 2026 has 25 hours in Berlin; what happens
    at 00:30 local time belongs to that local day, whatever its UTC date."""
    records = Records(BERLIN)

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        contact = w.contact("Olga")
        c = w.conversation(contact, "webchat", datetime(2026, 10, 24, 22, 30, tzinfo=UTC))  # 00:30 CEST on the 25th
        w.customer(c, datetime(2026, 10, 25, 0, 30, tzinfo=UTC))  # 02:30 CEST
        w.customer(c, datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 02:30 CET, the hour again
        w.customer(c, datetime(2026, 10, 25, 22, 59, tzinfo=UTC))  # 23:59 CET on the 25th
        w.customer(c, datetime(2026, 10, 25, 23, 30, tzinfo=UTC))  # 00:30 CET on the 26th

    db = open_database(database_url)
    try:
        await db.write(write)
        figures = await report(db, "volume", "2026-10-24", "2026-10-27", "Europe/Berlin")
        check_volume(figures, records)
        days = {r["bucket"]: r["inbound"] for r in figures["series"] if r["channel"] == "all"}
        assert days == {"2026-10-24": 0, "2026-10-25": 4, "2026-10-26": 1}
        assert datetime.fromisoformat(figures["params"]["to"]) == datetime(2026, 10, 27, tzinfo=BERLIN)
    finally:
        await db.close()
