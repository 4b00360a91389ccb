"""Percentiles and durations, finished in Python.

Neither median nor p90 is portable SQL (PostgreSQL has ``percentile_cont``,
SQLite nothing), and business-hours durations need the team's calendar
(``hub.tickets.sla.BusinessHours``), which is Python. So the reports that
need them fetch one small row per ticket with one indexed query and finish
here.
"""

from __future__ import annotations

import math
from bisect import bisect_right
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
    SLA's week, zone and holidays), worked out once per day (in epoch
    seconds) into one running total of business seconds, so a duration is
    the difference of two lookups (two bisections) instead of a walk over its
    days.

    The calendar spans local days around the instants asked so far and
    doubles when an instant falls outside it. A calendar whose intervals are
    not in order (intervals of a day that overlap, or one turned around by a
    daylight-saving change) is walked day by day as before, so that every
    duration is the sum ``BusinessHours.between`` makes."""

    def __init__(self, hours: BusinessHours) -> None:
        self.hours = hours
        self._days: dict[date, tuple[tuple[float, float], ...]] = {}
        self._first: date | None = None
        self._last: date | None = None
        self._covers = (0.0, 0.0)  # [from, to) in epoch seconds: local midnights around the calendar's days
        self._edges: list[float] | list[int] = []  # opens, closes, opens, closes... in time order
        self._elapsed: list[float] | list[int] = []  # business seconds before each edge, from the calendar's first day
        self._ordered = True

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

    def _cover(self, begin: float, finish: float) -> None:
        """Make the calendar span the local days of ``begin`` and ``finish``."""
        zone = self.hours.zone
        first, last = datetime.fromtimestamp(begin, zone).date(), datetime.fromtimestamp(finish, zone).date()
        if self._first is not None and self._last is not None:
            grow = max(timedelta(days=31), self._last - self._first)
            first = min(first, self._first - grow) if first < self._first else self._first
            last = max(last, self._last + grow) if last > self._last else self._last
        edges: list[float] = []
        elapsed: list[float] = []
        total = 0.0
        day = first
        while day <= last:
            for opens, closes in self._intervals(day):
                edges += (opens, closes)
                elapsed += (total, total + (closes - opens))
                total += closes - opens
            day += timedelta(days=1)
        self._first, self._last = first, last
        self._edges, self._elapsed = edges, elapsed
        self._ordered = all(edges[i] <= edges[i + 1] for i in range(len(edges) - 1))
        if all(edge.is_integer() for edge in edges):  # whole seconds (every zone's offsets): int arithmetic is quicker
            self._edges, self._elapsed = [int(edge) for edge in edges], [int(value) for value in elapsed]
        self._covers = (
            datetime.combine(first, time(0), tzinfo=zone).timestamp(),
            datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).timestamp(),
        )

    def _elapsed_at(self, instant: float) -> float:
        """Business seconds from the calendar's first day to ``instant``."""
        index = bisect_right(self._edges, instant)
        if index % 2:  # open: after the opening at ``index - 1``
            return self._elapsed[index - 1] + (instant - self._edges[index - 1])
        return self._elapsed[index - 1] if index else 0.0

    def between(self, begin: float, finish: float) -> float:
        """Seconds of business time between two epoch seconds."""
        if finish <= begin:
            return 0.0
        covers_from, covers_to = self._covers
        if begin < covers_from or finish >= covers_to:
            self._cover(begin, finish)
        if not self._ordered:
            return self._walk(begin, finish)
        return float(self._elapsed_at(finish) - self._elapsed_at(begin))

    def durations(self, spans: Iterable[tuple[float, float | None]]) -> list[float | None]:
        """``between`` of each ``(begin, finish)``, None where ``finish`` is None:
        the same lookups, in one loop."""
        pairs = list(spans)
        ends = [finish for _, finish in pairs if finish is not None]
        if ends:
            self.between(min(begin for begin, _ in pairs), max(ends))  # one calendar for them all
        if not self._ordered:
            return [self.between(begin, finish) if finish is not None else None for begin, finish in pairs]
        edges, elapsed = self._edges, self._elapsed
        found: list[float | None] = []
        for begin, finish in pairs:
            if finish is None:
                found.append(None)
            elif finish <= begin:
                found.append(0.0)
            else:
                index = bisect_right(edges, finish)
                if index % 2:
                    later = elapsed[index - 1] + (finish - edges[index - 1])
                else:
                    later = elapsed[index - 1] if index else 0.0
                index = bisect_right(edges, begin)
                if index % 2:
                    earlier = elapsed[index - 1] + (begin - edges[index - 1])
                else:
                    earlier = elapsed[index - 1] if index else 0.0
                found.append(float(later - earlier))
        return found

    def _walk(self, begin: float, finish: float) -> float:
        """The sum over each day's intervals. A day's intervals lie within its
        local date (they close by 24:00), so the local dates from ``begin``'s
        to ``finish``'s hold every one that counts."""
        zone = self.hours.zone
        day, last = datetime.fromtimestamp(begin, zone).date(), datetime.fromtimestamp(finish, zone).date()
        total = 0.0
        while day <= last:
            for opens, closes in self._intervals(day):
                if closes > begin and opens < finish:
                    total += min(closes, finish) - max(opens, begin)
            day += timedelta(days=1)
        return total


def durations(spans: Iterable[tuple[float, float | None]], clock: BusinessClock | None) -> list[float | None]:
    """``duration`` of each ``(start, end)``, None where ``end`` is None."""
    if clock is not None:
        return clock.durations(spans)
    return [max(0.0, float(end - start)) if end is not None else None for start, end in spans]


def duration(start: float, end: float, clock: BusinessClock | None) -> float:
    """Seconds between two epoch seconds: only the open hours when the team
    has business hours (the SLA clock's own calendar), else all of them."""
    if clock is not None:
        return clock.between(start, end)
    return max(0.0, float(end - start))
