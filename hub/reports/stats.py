"""Percentiles and durations, finished in Python.

Neither median nor p90 is portable SQL (PostgreSQL has ``percentile_cont``,
SQLite nothing), and business-hours durations need the team's calendar
(``hub.tickets.sla.BusinessHours``), which is Python. So the reports that
need them fetch one small row per ticket with one indexed query and finish
here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from hub.tickets.sla import BusinessHours


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation between the closest
    ranks: what PostgreSQL's ``percentile_cont`` and numpy's default give.
    None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(prefix: str, values: list[float]) -> dict[str, float | int | None]:
    """``{prefix}_count``, ``_median_s`` and ``_p90_s`` of durations in seconds."""
    median, p90 = percentile(values, 0.5), percentile(values, 0.9)
    return {
        f"{prefix}_count": len(values),
        f"{prefix}_median_s": round(median, 1) if median is not None else None,
        f"{prefix}_p90_s": round(p90, 1) if p90 is not None else None,
    }


class BusinessClock:
    """``BusinessHours.between`` for many durations: the same calendar (the
    SLA's week, zone and holidays), with each day's opening intervals worked
    out once (in epoch seconds) instead of once per duration."""

    def __init__(self, hours: BusinessHours) -> None:
        self.hours = hours
        self._days: dict[date, tuple[tuple[float, float], ...]] = {}

    def _intervals(self, day: date) -> tuple[tuple[float, float], ...]:
        found = self._days.get(day)
        if found is None:
            hours = self.hours
            if day in hours.holidays:
                found = ()
            else:
                midnight = datetime.combine(day, time(0), tzinfo=hours.zone)
                # Wall-clock offsets from local midnight, as BusinessHours does (09:00 stays 09:00 across DST).
                found = tuple(
                    ((midnight + opens).astimezone(UTC).timestamp(), (midnight + closes).astimezone(UTC).timestamp())
                    for opens, closes in hours.week[day.weekday()]
                )
            self._days[day] = found
        return found

    def between(self, begin: float, finish: float) -> float:
        """Seconds of business time between two epoch seconds. A day's
        intervals lie within its local date (they close by 24:00), so the
        local dates from ``begin``'s to ``finish``'s hold every one that counts."""
        if finish <= begin:
            return 0.0
        zone = self.hours.zone
        day, last = datetime.fromtimestamp(begin, zone).date(), datetime.fromtimestamp(finish, zone).date()
        total = 0.0
        while day <= last:
            for opens, closes in self._intervals(day):
                if closes > begin and opens < finish:
                    total += min(closes, finish) - max(opens, begin)
            day += timedelta(days=1)
        return total


def duration(start: float, end: float, clock: BusinessClock | None) -> float:
    """Seconds between two epoch seconds: only the open hours when the team
    has business hours (the SLA clock's own calendar), else all of them."""
    if clock is not None:
        return clock.between(start, end)
    return max(0.0, float(end - start))
