"""SLA business hours: the clock runs only while the team works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.errors import ConfigError
from hub.models import Priority
from hub.tickets.sla import BusinessHours, Policy, deadlines, paused_for
from tests.conftest import make_settings, start_hub

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Berlin")
POLICIES = {Priority.NORMAL: Policy(first_response=timedelta(minutes=60), resolution=timedelta(hours=16))}


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_friday_afternoon_ticket_is_due_on_monday_morning() -> None:
    assert OFFICE is not None
    created = berlin(2026, 11, 27, 16, 30)  # a Friday
    first, resolution = deadlines(POLICIES, "normal", created, 0.0, OFFICE)
    assert first == berlin(2026, 11, 30, 9, 30)  # 30 min on Friday, 30 on Monday
    # 16 h of work: 0.5 h Friday, 8 h Monday, 7.5 h Tuesday.
    assert resolution == berlin(2026, 12, 1, 16, 30)


def test_created_outside_hours_starts_at_opening() -> None:
    assert OFFICE is not None
    assert OFFICE.add(berlin(2026, 11, 28, 3, 0), 15 * 60) == berlin(2026, 11, 30, 9, 15)  # Saturday night
    assert OFFICE.add(berlin(2026, 11, 24, 7, 0), 60) == berlin(2026, 11, 24, 9, 1)
    assert OFFICE.add(berlin(2026, 11, 24, 17, 0), 60) == berlin(2026, 11, 25, 9, 1)


def test_without_business_hours_the_clock_runs_around_the_clock() -> None:
    created = berlin(2026, 11, 27, 16, 30)
    first, _ = deadlines(POLICIES, "normal", created, 120.0, None)
    assert first == created + timedelta(minutes=62)
    assert BusinessHours.parse("") is None
    assert deadlines(POLICIES, "urgent", created, 0.0, OFFICE) == (None, None)  # no policy for urgent


def test_pauses_count_in_business_time() -> None:
    assert OFFICE is not None
    # Waiting on the customer from Thursday 16:00 to Monday 10:00: 1 h on
    # Thursday, 8 on Friday, 1 on Monday; the weekend and nights are free.
    assert paused_for(berlin(2026, 11, 26, 16, 0), berlin(2026, 11, 30, 10, 0), OFFICE) == 10 * 3600
    assert paused_for(berlin(2026, 11, 26, 16, 0), berlin(2026, 11, 30, 10, 0), None) == (3 * 24 + 18) * 3600
    # between() and add() agree.
    start = berlin(2026, 11, 25, 11, 17)
    for seconds in (1, 3600, 6 * 3600 + 43, 40 * 3600):
        assert OFFICE.between(start, OFFICE.add(start, seconds)) == pytest.approx(seconds)


def test_daylight_saving_change_keeps_wall_clock_hours() -> None:
    hours = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Berlin")
    assert hours is not None
    # Berlin leaves summer time in the night to Sunday 2026-10-25.
    due = hours.add(berlin(2026, 10, 23, 16, 0), 2 * 3600)
    assert due == berlin(2026, 10, 26, 10, 0)
    assert due.astimezone(UTC).hour == 9  # UTC+1 again


def test_split_days_weekends_and_holidays() -> None:
    hours = BusinessHours.parse("mon-fri 09:00-12:00,13:00-17:00; sat 10:00-14:00", "Europe/Berlin", "2026-12-25")
    assert hours is not None
    assert hours.add(berlin(2026, 11, 24, 11, 30), 3600) == berlin(2026, 11, 24, 13, 30)  # lunch is off the clock
    assert hours.add(berlin(2026, 11, 28, 13, 30), 3600) == berlin(2026, 11, 30, 9, 30)  # Saturday, then Monday
    assert hours.add(berlin(2026, 12, 24, 16, 30), 3600) == berlin(2026, 12, 26, 10, 30)  # Christmas Day is off
    around_the_clock = BusinessHours.parse("sun-sat 00:00-24:00", "UTC")
    assert around_the_clock is not None
    start = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    assert around_the_clock.add(start, 5 * 3600) == start + timedelta(hours=5)


@pytest.mark.parametrize(
    ("text", "zone", "holidays", "message"),
    [
        ("mon-fri", "UTC", "", "has no hours"),
        ("weekdays 09:00-17:00", "UTC", "", "cannot read the days"),
        ("mon-fri 9am-5pm", "UTC", "", "cannot read the time"),
        ("mon-fri 17:00-09:00", "UTC", "", "closes before it opens"),
        ("mon-fri 09:00-24:30", "UTC", "", "cannot read the time"),
        ("mon-fri 09:00-17:00", "Mars/Olympus_Mons", "", "unknown time zone"),
        ("mon-fri 09:00-17:00", "UTC", "Christmas", "expected ISO dates"),
    ],
)
def test_bad_business_hours_fail_at_start_up(text: str, zone: str, holidays: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BusinessHours.parse(text, zone, holidays)


def test_a_calendar_without_any_open_hour_is_refused() -> None:
    hours = BusinessHours.parse("mon 09:00-17:00", "UTC")
    assert hours is not None
    mondays = ",".join(str(datetime(2026, 11, 30).date() + timedelta(weeks=n)) for n in range(200))
    closed = BusinessHours.parse("mon 09:00-17:00", "UTC", mondays)
    assert closed is not None
    with pytest.raises(ConfigError, match="no business hours"):
        closed.add(datetime(2026, 11, 29, tzinfo=UTC), 60)


@pytest.mark.asyncio
async def test_a_hub_with_business_hours_sets_deadlines_in_business_time(sqlite_url: str, tmp_path: Path) -> None:
    # Open one hour a week, at a time that is never now: the deadline lands in that hour.
    now = datetime.now(UTC)
    day = (now + timedelta(days=3)).strftime("%a").lower()
    settings = make_settings(
        sqlite_url,
        tmp_path,
        sla_business_hours=f"{day} 10:00-11:00",
        sla_timezone="UTC",
        sla_policies="normal=30/60",
    )
    hub = await start_hub(settings)
    try:
        received = await hub.inbound({"from": "after-hours", "text": "help!", "id": "after-hours-1"})
        message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
        ticket = await hub.api(
            "POST",
            f"/api/v1/conversations/{message['conversation_id']}/handoff",
            role="agent",
            json={"priority": "normal"},
            expect=201,
        )
        first = datetime.fromisoformat(ticket["first_response_due"])
        resolution = datetime.fromisoformat(ticket["resolution_due"])
        assert first.astimezone(UTC).strftime("%a %H:%M") == f"{day.title()} 10:30"
        assert resolution.astimezone(UTC).strftime("%a %H:%M") == f"{day.title()} 11:00"
        assert timedelta(days=2) < first - now < timedelta(days=4)
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_bad_business_hours_stop_the_hub_from_starting(sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HUB_SLA_BUSINESS_HOURS"):
        hub = await start_hub(make_settings(sqlite_url, tmp_path, sla_business_hours="someday 09:00-17:00"))
        await hub.client.close()
