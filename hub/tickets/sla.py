"""SLA policies and the scheduler that enforces them.

Each priority has a first-response and a resolution target. Deadlines are
stored on the ticket (``first_response_due``, ``resolution_due``), counted
from its creation plus the time spent waiting on the customer (conversation
status ``pending`` pauses the clock). Because the deadlines live in the
database, a restart loses nothing: the scheduler's first pass, right at
start-up, escalates whatever fell due while the hub was down.

With business hours (``HUB_SLA_BUSINESS_HOURS``, ``HUB_SLA_TIMEZONE``,
``HUB_SLA_HOLIDAYS``) the clock only runs while the team works, as in
Zendesk's or Freshdesk's SLA calendars: a 60-minute first response for a
ticket opened on Friday at 16:30 in a Monday-Friday 09:00-17:00 team falls
due on Monday at 09:30. Paused time is counted in business time too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.aio import wait_event
from hub.errors import ConfigError
from hub.models import Priority

if TYPE_CHECKING:
    from hub.leases import Lease

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    first_response: timedelta
    resolution: timedelta

    def to_dict(self) -> dict[str, float]:
        return {
            "first_response_minutes": self.first_response.total_seconds() / 60,
            "resolution_minutes": self.resolution.total_seconds() / 60,
        }


def parse_policies(text: str) -> dict[Priority, Policy]:
    """``"urgent=15/240,high=60/480"`` (minutes) -> a policy per priority.

    Priorities left out have no SLA.
    """
    policies: dict[Priority, Policy] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, targets = part.partition("=")
        first, _, resolution = targets.partition("/")
        try:
            priority = Priority(name.strip())
            policies[priority] = Policy(
                first_response=timedelta(minutes=float(first)), resolution=timedelta(minutes=float(resolution))
            )
        except ValueError:
            raise ConfigError(
                f"HUB_SLA_POLICIES: cannot read {part!r}; expected priority=first_response/resolution in minutes"
            ) from None
    return policies


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
# Walking a calendar with no open hour at all (every day a holiday) must end.
_MAX_DAYS = 3 * 366


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When the team works: opening intervals per weekday (offsets from local
    midnight, so 24:00 works), in one time zone, minus holidays."""

    week: tuple[tuple[tuple[timedelta, timedelta], ...], ...]  # Monday first
    zone: ZoneInfo
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(cls, text: str, zone: str = "UTC", holidays: str = "") -> BusinessHours | None:
        """``"mon-fri 09:00-17:00; sat 10:00-14:00"`` (intervals of a day
        group separated by commas: ``"mon-fri 09:00-12:00,13:00-17:00"``).
        Empty: no business hours, the SLA clock runs around the clock."""
        if not text.strip():
            return None
        try:
            tz = ZoneInfo(zone.strip() or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"HUB_SLA_TIMEZONE: unknown time zone {zone!r}") from None
        week: list[list[tuple[timedelta, timedelta]]] = [[] for _ in DAYS]
        for group in filter(None, (g.strip() for g in text.split(";"))):
            days_text, _, hours_text = group.partition(" ")
            days = _parse_days(days_text.strip().lower(), group)
            for interval in filter(None, (i.strip() for i in hours_text.split(","))):
                opens, _, closes = interval.partition("-")
                start, end = _parse_clock(opens, group), _parse_clock(closes, group)
                if end <= start:
                    raise ConfigError(f"HUB_SLA_BUSINESS_HOURS: {interval!r} in {group!r} closes before it opens")
                for day in days:
                    week[day].append((start, end))
            if not hours_text.strip():
                raise ConfigError(f"HUB_SLA_BUSINESS_HOURS: {group!r} has no hours (e.g. 'mon-fri 09:00-17:00')")
        try:
            off = frozenset(date.fromisoformat(d.strip()) for d in holidays.split(",") if d.strip())
        except ValueError:
            raise ConfigError(f"HUB_SLA_HOLIDAYS: expected ISO dates (2026-12-25,...), got {holidays!r}") from None
        return cls(week=tuple(tuple(sorted(day)) for day in week), zone=tz, holidays=off)

    def _open_intervals(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Opening intervals in UTC, from the local day of ``start`` on."""
        day = start.astimezone(self.zone).date()
        for _ in range(_MAX_DAYS):
            if day not in self.holidays:
                midnight = datetime.combine(day, time(0), tzinfo=self.zone)
                for opens, closes in self.week[day.weekday()]:
                    # Wall-clock offsets from local midnight (09:00 stays 09:00
                    # across a DST change), then UTC for arithmetic.
                    yield (midnight + opens).astimezone(UTC), (midnight + closes).astimezone(UTC)
            day += timedelta(days=1)

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment ``seconds`` of business time after ``start``."""
        remaining = timedelta(seconds=max(0.0, seconds))
        start = start.astimezone(UTC)
        for opens, closes in self._open_intervals(start):
            if closes <= start:
                continue
            begin = max(opens, start)
            if begin + remaining <= closes:
                return begin + remaining
            remaining -= closes - begin
        raise ConfigError("HUB_SLA_BUSINESS_HOURS: no business hours in the next three years")

    def next_opening(self, at: datetime) -> datetime | None:
        """When the team is at work next: ``at`` itself while it is open, else
        the next opening (UTC); None when no day of the next three years opens."""
        at = at.astimezone(UTC)
        for opens, closes in self._open_intervals(at):
            if closes > at:
                return max(opens, at)
        return None

    def between(self, start: datetime, end: datetime) -> float:
        """Seconds of business time from ``start`` to ``end``."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        total = 0.0
        for opens, closes in self._open_intervals(start):
            if opens >= end:
                break
            overlap = min(closes, end) - max(opens, start)
            total += max(0.0, overlap.total_seconds())
        return total


def _parse_days(text: str, group: str) -> list[int]:
    days: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ConfigError(f"HUB_SLA_BUSINESS_HOURS: cannot read the days {part!r} in {group!r} (mon..sun)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return days


def _parse_clock(text: str, group: str) -> timedelta:
    match = _CLOCK.match(text.strip())
    if match is None or (match.group(1) == "24" and match.group(2) != "00"):
        raise ConfigError(f"HUB_SLA_BUSINESS_HOURS: cannot read the time {text!r} in {group!r} (HH:MM)")
    return timedelta(hours=int(match.group(1)), minutes=int(match.group(2)))


def deadlines(
    policies: dict[Priority, Policy],
    priority: Priority | str,
    created_at: datetime,
    paused_seconds: float,
    hours: BusinessHours | None = None,
) -> tuple[datetime | None, datetime | None]:
    """``(first_response_due, resolution_due)`` for a ticket; with ``hours``,
    targets and ``paused_seconds`` are business time."""
    policy = policies.get(Priority(priority))
    if policy is None:
        return None, None
    if hours is not None:
        return (
            hours.add(created_at, policy.first_response.total_seconds() + paused_seconds),
            hours.add(created_at, policy.resolution.total_seconds() + paused_seconds),
        )
    shift = timedelta(seconds=paused_seconds)
    return created_at + policy.first_response + shift, created_at + policy.resolution + shift


def warning_moments(
    policies: dict[Priority, Policy],
    priority: Priority | str,
    created_at: datetime,
    paused_seconds: float,
    hours: BusinessHours | None,
    share: float,
) -> tuple[datetime | None, datetime | None]:
    """``(first_response_warn_at, resolution_warn_at)``: when ``share`` of
    each window will have elapsed, counted as the deadlines are (business
    time with ``hours``, paused time excluded). None without a policy, or
    when ``share`` is 0 or 1 (no warnings)."""
    policy = policies.get(Priority(priority))
    if policy is None or not 0.0 < share < 1.0:
        return None, None
    first = policy.first_response.total_seconds() * share + paused_seconds
    resolution = policy.resolution.total_seconds() * share + paused_seconds
    if hours is not None:
        return hours.add(created_at, first), hours.add(created_at, resolution)
    return created_at + timedelta(seconds=first), created_at + timedelta(seconds=resolution)


def paused_for(start: datetime, end: datetime, hours: BusinessHours | None) -> float:
    """How much SLA time a pause from ``start`` to ``end`` is worth."""
    if hours is not None:
        return hours.between(start, end)
    return max(0.0, (end - start).total_seconds())


class SlaScheduler:
    """Runs ``check()`` now and then every ``interval`` seconds (``wake()``
    runs it at once). One task, started and stopped by a cleanup context.

    With a ``lease`` (several instances on one database), a pass runs only
    while this instance holds it (``hub.leases``): one scheduler acts, and
    another takes over when it stops or dies. Each item is still claimed in
    its own transaction, so a pass run twice acts once."""

    def __init__(self, check: Callable[[], Awaitable[int]], *, interval: float, lease: Lease | None = None) -> None:
        self.check = check
        self.interval = interval
        self.lease = lease
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sla-scheduler")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.lease is not None:
            try:
                await self.lease.release()  # the next instance need not wait for it to expire
            except Exception:
                log.warning("could not release the SLA scheduler's lease; it expires by itself", exc_info=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if self.lease is None or await self.lease.hold():
                    await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SLA check failed; retrying")
            await wait_event(self._wake, self.interval)
