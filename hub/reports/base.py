"""What a report is: a function of a connection, the parameters and the
context, returning its figures; and the shape every report answers in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from hub.reports.params import Bucketing, ReportParams
from hub.tickets.sla import BusinessHours

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What a report needs beyond its parameters: the team's business hours
    (durations count open hours only when set) and the time it runs at
    (an SLA target not yet due is pending, not breached)."""

    now: datetime
    hours: BusinessHours | None = None
    # The knowledge base's embeddings of texts (its model, in its thread pool),
    # and the bot's answer confidence: the content-gaps report clusters with them.
    embed: Callable[[Sequence[str]], Awaitable[Any]] | None = None
    answer_confidence: float | None = None


@dataclass(slots=True)
class Result:
    """``series``: one row per bucket (and dimension, when the report has one),
    every bucket of the range included; ``totals``: the whole range; ``groups``:
    the range broken down by a dimension (channel, agent, team, priority)."""

    series: list[Row]
    totals: list[Row]
    groups: dict[str, list[Row]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


ReportFn = Callable[[Connection, ReportParams, Context], Result]


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    summary: str
    run: ReportFn
    filters: frozenset[str]  # which of channel, team, agent, priority it takes
    # A step after the read transaction, off it (the content gaps embed their questions).
    finish: Callable[[Result, Context], Awaitable[Result]] | None = None


def empty_series(
    bucketing: Bucketing, zero: Row, by: str | None = None, values: list[Any] | None = None
) -> dict[Any, Row]:
    """A row per bucket (per bucket and ``by`` value), zeros filled in."""
    rows: dict[Any, Row] = {}
    for info in bucketing.buckets:
        start = info.start.isoformat()
        for value in values if by is not None and values is not None else [None]:
            row: Row = {"bucket": info.label, "start": start}
            if by is not None:
                row[by] = value
            row.update(zero)
            rows[(info.key, value) if by is not None else info.key] = row
    return rows


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
