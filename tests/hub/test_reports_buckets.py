"""Local buckets (``hub.reports.params``) against ``zoneinfo`` itself, over
years of instants in zones with DST, half-hour offsets and none."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hub.errors import InvalidInput
from hub.reports.params import Bucket, Bucketing, ReportParams
from hub.reports.stats import BusinessClock
from hub.tickets.sla import BusinessHours

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Adelaide", "Pacific/Chatham", "UTC"]


@pytest.mark.parametrize("zone", ZONES)
def test_every_instant_lands_in_its_local_day_week_and_hour(zone: str) -> None:
    rng = random.Random(zone)
    params = {b: ReportParams.parse(start="2025-01-01", end="2026-12-31", tz=zone, bucket=b) for b in ("day", "week")}
    day, week = Bucketing(params["day"]), Bucketing(params["week"])
    hour = Bucketing(replace(params["day"], bucket=Bucket.HOUR))  # more hours than a request may ask for
    for _ in range(3000):
        instant = params["day"].start + timedelta(
            seconds=rng.randrange(int((params["day"].end - params["day"].start).total_seconds()))
        )
        epoch = int(instant.timestamp())
        local = instant.astimezone(params["day"].zone)
        assert day.info(day.key_of(epoch)).label == local.date().isoformat()
        monday = local.date() - timedelta(days=local.weekday())
        assert week.info(week.key_of(epoch)).label == monday.isoformat()
        # The hour bucket starts on the local hour the instant is in (its own
        # offset), at most an hour before it.
        start = hour.info(hour.key_of(epoch)).start
        assert timedelta(0) <= instant - start < timedelta(hours=1)
        assert (start.astimezone(params["day"].zone).minute, start.second) == (0, 0)


def test_a_fall_back_day_has_25_distinct_hours_and_a_spring_day_23() -> None:
    fall = Bucketing(ReportParams.parse(start="2026-10-25", end="2026-10-26", tz="Europe/Berlin", bucket="hour"))
    assert len(fall.buckets) == 25
    assert len({b.start for b in fall.buckets}) == 25
    spring = Bucketing(ReportParams.parse(start="2026-03-29", end="2026-03-30", tz="Europe/Berlin", bucket="hour"))
    assert [b.label[11:16] for b in spring.buckets][:4] == ["00:00", "01:00", "03:00", "04:00"]
    assert all(b.start.tzinfo == UTC for b in spring.buckets)


def test_instants_are_read_in_the_zone_unless_they_say_otherwise() -> None:
    params = ReportParams.parse(start="2026-03-29T09:00", end="2026-03-29T10:00:00Z", tz="Europe/Berlin")
    assert params.start == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert params.end == datetime(2026, 3, 29, 10, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        ReportParams.parse(start="2026-03-29", end="2026-03-29", tz="UTC")
    with pytest.raises(InvalidInput):
        ReportParams.parse(start="2026-03-29", end="2026-03-30", tz="Europe/Nowhere")


@pytest.mark.parametrize(
    ("text", "zone", "holidays"),
    [
        ("mon-fri 09:00-17:00", "Europe/Berlin", "2026-12-25,2026-12-26"),
        ("mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00", "America/New_York", ""),
        ("sun-thu 00:00-24:00", "Asia/Kolkata", "2026-01-26"),
    ],
)
def test_the_reports_business_clock_is_the_sla_calendar(text: str, zone: str, holidays: str) -> None:
    """``BusinessClock`` (per-day intervals worked out once) gives what the
    SLA's ``BusinessHours.between`` gives, over random spans, DST included."""
    hours = BusinessHours.parse(text, zone, holidays)
    assert hours is not None
    clock = BusinessClock(hours)
    rng = random.Random(text)
    origin = datetime(2025, 12, 1, tzinfo=UTC)
    for _ in range(2000):
        start = origin + timedelta(seconds=rng.randrange(400 * 86400))
        end = start + timedelta(
            seconds=rng.choice([rng.randrange(3600), rng.randrange(5 * 86400), rng.randrange(60 * 86400)])
        )
        assert clock.between(start.timestamp(), end.timestamp()) == pytest.approx(hours.between(start, end), abs=1e-6)


@pytest.mark.parametrize(
    ("text", "zone", "holidays"),
    [
        ("mon-fri 09:00-17:00", "Europe/Berlin", "2026-12-25,2026-12-26"),
        ("mon-fri 09:00-12:00,13:00-17:30; sat 10:00-14:00", "America/New_York", ""),
        ("mon-sun 00:00-12:00,12:00-24:00", "Australia/Adelaide", ""),
        ("mon-fri 09:00-12:00,11:00-13:00", "UTC", ""),  # overlapping: walked day by day
        ("sun 02:30-03:00", "Europe/Berlin", ""),  # turned around on a spring-forward Sunday
    ],
)
def test_the_business_clock_is_exactly_the_day_by_day_sum(text: str, zone: str, holidays: str) -> None:
    """The running total gives, to the bit, the sum over each day's intervals,
    whatever order the instants come in (the calendar grows both ways)."""
    hours = BusinessHours.parse(text, zone, holidays)
    assert hours is not None
    clock, reference = BusinessClock(hours), BusinessClock(hours)
    rng = random.Random(text)
    origin = int(datetime(2025, 12, 1, tzinfo=UTC).timestamp())
    spans: list[tuple[float, float | None]] = []
    for _ in range(3000):
        begin = origin + rng.randrange(-200 * 86400, 600 * 86400)
        finish = begin + rng.choice([rng.randrange(-600, 3600), rng.randrange(5 * 86400), rng.randrange(90 * 86400)])
        expected = reference._walk(begin, finish) if finish > begin else 0.0
        assert clock.between(begin, finish) == expected
        spans.append((begin, finish))
    spans.append((origin, None))
    expected_all = [reference._walk(b, f) if f is not None and f > b else None if f is None else 0.0 for b, f in spans]
    assert BusinessClock(hours).durations(spans) == expected_all
