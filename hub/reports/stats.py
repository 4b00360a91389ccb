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
from datetime import datetime

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


def duration(start: datetime, end: datetime, hours: BusinessHours | None) -> float:
    """Seconds from ``start`` to ``end``: only the open hours when the team
    has business hours (the SLA clock's own calendar), else all of them."""
    if hours is not None:
        return hours.between(start, end)
    return max(0.0, (end - start).total_seconds())
