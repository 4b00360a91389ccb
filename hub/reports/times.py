"""First response time and resolution time: median and p90, overall, per
bucket, and by channel, agent, team and priority.

**A cycle is a ticket.** A handoff opens a ticket; its clock starts then
(``tickets.created_at``, as the SLA's does). Its *first response* is the
first agent reply queued while it was open (``tickets.first_response_at``,
recorded in that reply's own transaction); its *resolution* is its
``resolved_at``. A ticket never reopens: when a customer writes again after
a resolve, the conversation reopens and the next handoff opens a new ticket,
a new cycle with its own first response and resolution, and the report counts
it as ``reopened`` (its conversation had an earlier ticket). So a reopened
conversation never stretches the first cycle's resolution, and a second
cycle's first response is measured from its own handoff.

Cycles are counted in the bucket their ticket opened in, whatever time they
were answered or resolved (``answered`` and ``resolved`` say how many were
by the time the report ran). With business hours configured
(``HUB_SLA_BUSINESS_HOURS``: the SLA's calendar, zone and holidays), only
open hours count: a ticket opened on Friday at 16:30 and answered on Monday
at 09:30 in a Monday-Friday 09:00-17:00 team took 60 minutes.

By agent: a first response is the responder's (the author of that first
reply), a resolution the assignee's. Percentiles and business hours are
Python (``hub.reports.stats``): the query fetches one row per ticket of the
range through ``tickets.created_at`` (indexed, migration 0011).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import compress
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.models import AuthorKind, Direction, MessageKind
from hub.reports.base import Context, Report, Result, Row, empty_series
from hub.reports.params import Bucketing, ReportParams
from hub.reports.sql import SOURCES, EpochSeconds, Source, in_range
from hub.reports.stats import BusinessClock, durations, summary
from hub.storage.schema import users


def cycles(conn: Connection, params: ReportParams) -> list[Any]:
    """One row per ticket opened in the range (both sources), filtered."""
    found: list[Any] = []
    for source in SOURCES:
        found += conn.execute(_cycles_query(source, params)).all()
    return found


def _cycles_query(source: Source, params: ReportParams) -> sa.Select[Any]:
    t, c, m = source.tickets, source.conversations, source.messages
    earlier = source.tickets.alias("earlier")
    responder: sa.ColumnElement[Any] = (
        # Kept on the live ticket by triggers (migration 0020); an erased
        # ticket's is looked up in what the erasure kept of its messages.
        t.c.first_responder_id
        if source.name == "live"
        else sa.select(m.c.author_id)
        .where(
            m.c.conversation_id == t.c.conversation_id,
            m.c.kind == MessageKind.MESSAGE.value,
            m.c.direction == Direction.OUTBOUND.value,
            m.c.author_kind == AuthorKind.AGENT.value,
            m.c.created_at >= t.c.created_at,
        )
        .order_by(m.c.id)
        .limit(1)
        .scalar_subquery()
    )
    reopened = (
        sa.select(earlier.c.id).where(earlier.c.conversation_id == t.c.conversation_id, earlier.c.id < t.c.id).exists()
    )
    stmt = (
        sa.select(
            t.c.id,
            # Epoch seconds, not datetimes: tens of thousands of rows are
            # read, and integers need no conversion (durations to the second).
            EpochSeconds(t.c.created_at).label("opened"),
            EpochSeconds(t.c.first_response_at).label("first_response_at"),
            EpochSeconds(t.c.resolved_at).label("resolved_at"),
            t.c.priority,
            t.c.team,
            t.c.assignee_id,
            c.c.channel,
            sa.case((t.c.first_response_at.is_(None), None), else_=responder).label("responder_id"),
            reopened.label("reopened"),
        )
        .select_from(t.join(c, c.c.id == t.c.conversation_id))
        .where(in_range(t.c.created_at, params.start, params.end))
    )
    if params.channel is not None:
        stmt = stmt.where(c.c.channel == params.channel)
    if params.team is not None:
        stmt = stmt.where(t.c.team == params.team)
    if params.priority is not None:
        stmt = stmt.where(t.c.priority == params.priority)
    if params.agent is not None:
        stmt = stmt.where(sa.or_(t.c.assignee_id == params.agent, responder == params.agent))
    return stmt


class _Tally:
    """Tickets, reopened cycles, and the durations of one slice."""

    def __init__(self) -> None:
        self.tickets = 0
        self.reopened = 0
        self.first_response: list[float] = []
        self.resolution: list[float] = []

    def row(self) -> Row:
        return {
            "tickets": self.tickets,
            "reopened": self.reopened,
            **summary("first_response", self.first_response),
            **summary("resolution", self.resolution),
        }


_SKIP = object()  # not this slice's: another agent's, when the report is filtered by agent


def _tally_by(
    ticket_keys: list[Any],
    first_keys: list[Any],
    resolution_keys: list[Any],
    reopened: list[int],
    first: list[float | None],
    resolution: list[float | None],
) -> dict[Any, _Tally]:
    """The tallies of one dimension, the rows' keys given per figure (column by
    column: a few tight loops instead of one object per row and slice)."""
    tallies: dict[Any, _Tally] = defaultdict(_Tally)
    counted = Counter(ticket_keys)
    again = Counter(compress(ticket_keys, reopened))
    for key, count in counted.items():
        if key is not _SKIP:
            tally = tallies[key]
            tally.tickets, tally.reopened = count, again[key]
    for key, seconds in zip(first_keys, first, strict=True):
        if seconds is not None and key is not _SKIP:
            tallies[key].first_response.append(seconds)
    for key, seconds in zip(resolution_keys, resolution, strict=True):
        if seconds is not None and key is not _SKIP:
            tallies[key].resolution.append(seconds)
    return tallies


def run(conn: Connection, params: ReportParams, context: Context) -> Result:
    bucketing = Bucketing(params)
    rows = cycles(conn, params)
    hours = BusinessClock(context.hours) if context.hours is not None else None
    agent = params.agent
    # Column by column: one transpose instead of an attribute read per row and column.
    column: dict[str, tuple[Any, ...]] = dict(zip(rows[0]._fields, zip(*rows), strict=True)) if rows else {}
    opened = column.get("opened", ())
    reopened = [1 if flag else 0 for flag in column.get("reopened", ())]
    first = durations(zip(opened, column.get("first_response_at", ())), hours)
    resolution = durations(zip(opened, column.get("resolved_at", ())), hours)
    overall = _Tally()
    overall.tickets, overall.reopened = len(rows), sum(reopened)
    overall.first_response = [seconds for seconds in first if seconds is not None]
    overall.resolution = [seconds for seconds in resolution if seconds is not None]
    keys = {
        "bucket": list(map(bucketing.key_of, opened)),
        "channel": list(column.get("channel", ())),
        "team": list(column.get("team", ())),
        "priority": list(column.get("priority", ())),
    }
    per_bucket, *others = (_tally_by(key, key, key, reopened, first, resolution) for key in keys.values())
    dimensions = dict(zip(("channel", "team", "priority"), others, strict=True))
    # By agent: a first response is the responder's, a resolution the assignee's.
    assignees = [a if agent is None or agent == a else _SKIP for a in column.get("assignee_id", ())]
    responders = [r if agent is None or agent == r else _SKIP for r in column.get("responder_id", ())]
    per_agent = _tally_by(assignees, responders, assignees, reopened, first, resolution)
    series = empty_series(bucketing, _Tally().row())
    for key, tally in per_bucket.items():
        series[key].update(tally.row())
    groups = {name: _group(name, tallies, str) for name, tallies in dimensions.items()}
    names = _agent_names(conn, [agent for agent in per_agent if agent is not None])
    groups["agent"] = [
        {"agent_name": names.get(row["agent"]) if row["agent"] is not None else None, **row}
        for row in _group("agent", per_agent, lambda agent: (agent is None, agent or 0))
    ]
    return Result(
        series=list(series.values()),
        totals=[overall.row()],
        groups=groups,
        notes=["business hours" if context.hours is not None else "calendar time"],
    )


def _group(name: str, tallies: dict[Any, _Tally], order: Callable[[Any], Any]) -> list[Row]:
    return [{name: key, **tallies[key].row()} for key in sorted(tallies, key=order)]


def _agent_names(conn: Connection, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {row.id: row.name for row in conn.execute(sa.select(users.c.id, users.c.name).where(users.c.id.in_(ids)))}


REPORT = Report(
    name="response-times",
    summary="First response and resolution times (median, p90) by channel, agent, team and priority",
    run=run,
    filters=frozenset({"channel", "team", "agent", "priority"}),
)
