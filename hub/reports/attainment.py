"""SLA attainment and breaches, per bucket and by priority.

Each ticket opened in the range with an SLA policy has two targets, each in
one state, decided in the database (``_state``):

- *met*: done (answered, resolved) by its due time and never recorded as breached;
- *breached*: the scheduler recorded a breach, or it was done after its due
  time, or it is still not done and its due time has passed (and its clock
  is not paused waiting on the customer);
- *pending*: not done, not yet due (or paused);
- none: no target (no policy for the priority; a ticket resolved without
  any reply owes no first response).

Attainment is met / (met + breached): pending targets do not count yet.
Due times are the ones the SLA machinery keeps on the ticket (business
hours and paused time already in them). Counted in SQL: one GROUP BY per
source over (bucket, priority, first-response state, resolution state).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.reports.base import Context, Report, Result, Row, empty_series, rate
from hub.reports.params import Bucketing, ReportParams
from hub.reports.sql import SOURCES, Source, bucket_key, in_range
from hub.tickets.model import TicketStatus

STATES = ("met", "breached", "pending")
TARGETS = ("first_response", "resolution")


def _state(
    due: sa.ColumnElement[Any],
    breached_at: sa.ColumnElement[Any],
    done_at: sa.ColumnElement[Any],
    paused_at: sa.ColumnElement[Any],
    now: datetime,
    owed: sa.ColumnElement[bool] | None = None,
) -> sa.ColumnElement[str]:
    whens: list[tuple[Any, str]] = [
        (due.is_(None), "none"),
        (breached_at.is_not(None), "breached"),
        (sa.and_(done_at.is_not(None), done_at > due), "breached"),
        (done_at.is_not(None), "met"),
    ]
    if owed is not None:
        whens.append((sa.not_(owed), "none"))
    whens += [(paused_at.is_not(None), "pending"), (due <= now, "breached")]
    return sa.case(*whens, else_="pending")


def _query(source: Source, params: ReportParams, bucketing: Bucketing, now: datetime) -> sa.Select[Any]:
    t, c = source.tickets, source.conversations
    inner = (
        sa.select(
            bucket_key(t.c.created_at, bucketing).label("bucket"),
            t.c.priority,
            _state(
                t.c.first_response_due,
                t.c.first_response_breached_at,
                t.c.first_response_at,
                t.c.sla_paused_at,
                now,
                owed=t.c.status != TicketStatus.RESOLVED.value,
            ).label("first_response"),
            _state(t.c.resolution_due, t.c.resolution_breached_at, t.c.resolved_at, t.c.sla_paused_at, now).label(
                "resolution"
            ),
        )
        .select_from(t.join(c, c.c.id == t.c.conversation_id) if params.channel is not None else t)
        .where(in_range(t.c.created_at, params.start, params.end))
    )
    if params.channel is not None:
        inner = inner.where(c.c.channel == params.channel)
    if params.team is not None:
        inner = inner.where(t.c.team == params.team)
    if params.priority is not None:
        inner = inner.where(t.c.priority == params.priority)
    if params.agent is not None:
        inner = inner.where(t.c.assignee_id == params.agent)
    sub = inner.subquery()
    return sa.select(sub.c.bucket, sub.c.priority, sub.c.first_response, sub.c.resolution, sa.func.count()).group_by(
        sub.c.bucket, sub.c.priority, sub.c.first_response, sub.c.resolution
    )


def _zero() -> Row:
    row: Row = {"tickets": 0, "with_sla": 0}
    for target in TARGETS:
        row.update({f"{target}_{state}": 0 for state in STATES})
        row[f"{target}_attainment"] = None
    return row


def _add(row: Row, first_response: str, resolution: str, count: int) -> None:
    row["tickets"] += count
    if first_response != "none" or resolution != "none":
        row["with_sla"] += count
    for target, state in zip(TARGETS, (first_response, resolution), strict=True):
        if state != "none":
            row[f"{target}_{state}"] += count
            row[f"{target}_attainment"] = rate(row[f"{target}_met"], row[f"{target}_met"] + row[f"{target}_breached"])


def run(conn: Connection, params: ReportParams, context: Context) -> Result:
    bucketing = Bucketing(params)
    series = empty_series(bucketing, _zero())
    overall: Row = {"priority": "all", **_zero()}
    by_priority: dict[str, Row] = defaultdict(_zero)
    for source in SOURCES:
        for bucket, priority, first_response, resolution, count in conn.execute(
            _query(source, params, bucketing, context.now)
        ):
            for row in (series[bucket], overall, by_priority[priority]):
                _add(row, first_response, resolution, count)
    order = ("urgent", "high", "normal", "low")
    priorities = sorted(by_priority, key=lambda p: order.index(p) if p in order else len(order))
    return Result(
        series=list(series.values()),
        totals=[overall, *({"priority": p, **by_priority[p]} for p in priorities)],
    )


REPORT = Report(
    name="sla",
    summary="SLA attainment and breaches (first response, resolution) by priority",
    run=run,
    filters=frozenset({"channel", "team", "agent", "priority"}),
)
