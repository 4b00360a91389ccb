"""Agent activity: replies, internal notes, claims and resolves per agent.

Replies (customer-visible agent messages) and notes come from the timeline
(and what erasures kept of it): the whole quarter-hours of the range from
the counts kept per quarter-hour and agent as messages are written
(``report_agent_quarters``, see ``hub.reports.rollups``), the edges of the
range (and a range in a zone off the quarter-hour grid) from the rows.
Claims and resolves come from the audit log, where every agent action is
recorded with its change, whichever door it came through (API, Slack,
CLI): ``ticket.claim``, ``ticket.resolve``, and a conversation set to
resolved (``conversation.update``). Audit rows outlive an erasure (their
details are cleared, the action and its author stay). All counted in SQL,
grouped by (bucket, agent).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.models import AuthorKind, Direction, MessageKind
from hub.reports.base import Context, Report, Result, Row, empty_series
from hub.reports.params import Bucketing, ReportParams
from hub.reports.rollups import QUARTER_SECONDS, split
from hub.reports.sql import SOURCES, Source, bucket_key, epoch_bucket_key, in_range
from hub.storage.schema import agent_profiles, audit_log, report_agent_quarters, users

FIGURES = ("replies", "notes", "claims", "resolves")


def _scope(column: sa.ColumnElement[Any], params: ReportParams) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [column.is_not(None)]
    if params.agent is not None:
        where.append(column == params.agent)
    if params.team is not None:
        where.append(column.in_(sa.select(agent_profiles.c.user_id).where(agent_profiles.c.team == params.team)))
    return where


def _quarters(conn: Connection, params: ReportParams, bucketing: Bucketing, quarters: tuple[int, int]) -> list[Any]:
    """The rollup's replies and notes of the whole quarter-hours ``[first, last)``,
    as ``(bucket, agent, figure, count)`` rows like the rows' query."""
    r = report_agent_quarters
    inner = sa.select(
        epoch_bucket_key(r.c.quarter * QUARTER_SECONDS, bucketing).label("bucket"),
        r.c.agent_id.label("agent"),
        r.c.replies,
        r.c.notes,
    ).where(r.c.quarter >= quarters[0], r.c.quarter < quarters[1], *_scope(r.c.agent_id, params))
    sub = inner.subquery()
    found = []
    for bucket, agent, replies, notes in conn.execute(
        sa.select(sub.c.bucket, sub.c.agent, sa.func.sum(sub.c.replies), sa.func.sum(sub.c.notes)).group_by(
            sub.c.bucket, sub.c.agent
        )
    ):
        found += [(bucket, agent, figure, int(count)) for figure, count in (("replies", replies), ("notes", notes))]
    return [row for row in found if row[3]]


def _messages_query(
    source: Source, params: ReportParams, bucketing: Bucketing, start: datetime, end: datetime
) -> sa.Select[Any]:
    m = source.messages
    figure = sa.case((m.c.kind == MessageKind.NOTE.value, "notes"), else_="replies")
    inner = sa.select(
        bucket_key(m.c.created_at, bucketing).label("bucket"), m.c.author_id.label("agent"), figure.label("figure")
    ).where(
        in_range(m.c.created_at, start, end),
        m.c.author_kind == AuthorKind.AGENT.value,
        sa.or_(
            m.c.kind == MessageKind.NOTE.value,
            sa.and_(m.c.kind == MessageKind.MESSAGE.value, m.c.direction == Direction.OUTBOUND.value),
        ),
        *_scope(m.c.author_id, params),
    )
    sub = inner.subquery()
    return sa.select(sub.c.bucket, sub.c.agent, sub.c.figure, sa.func.count()).group_by(
        sub.c.bucket, sub.c.agent, sub.c.figure
    )


def _audit_queries(params: ReportParams, bucketing: Bucketing) -> list[sa.Select[Any]]:
    """Claims and resolves, and conversations set to resolved: two queries, so
    that the first reads an index (``ix_audit_log_action``) without the rows."""
    a = audit_log
    figure = sa.case((a.c.action == "ticket.claim", "claims"), else_="resolves")
    resolved = a.c.details[("changes", "status")].as_string() == "resolved"
    queries = []
    for action, where in (
        (figure, a.c.action.in_(("ticket.claim", "ticket.resolve"))),
        (sa.literal("resolves"), sa.and_(a.c.action == "conversation.update", resolved)),
    ):
        inner = sa.select(
            bucket_key(a.c.created_at, bucketing).label("bucket"), a.c.user_id.label("agent"), action.label("figure")
        ).where(in_range(a.c.created_at, params.start, params.end), where, *_scope(a.c.user_id, params))
        sub = inner.subquery()
        queries.append(
            sa.select(sub.c.bucket, sub.c.agent, sub.c.figure, sa.func.count()).group_by(
                sub.c.bucket, sub.c.agent, sub.c.figure
            )
        )
    return queries


def run(conn: Connection, params: ReportParams, context: Context) -> Result:
    bucketing = Bucketing(params)
    parts = split(bucketing)
    found: list[Any] = _quarters(conn, params, bucketing, parts.quarters) if parts.quarters is not None else []
    for start, end in parts.edges:
        for source in SOURCES:
            found += conn.execute(_messages_query(source, params, bucketing, start, end)).all()
    for query in _audit_queries(params, bucketing):
        found += conn.execute(query).all()
    agents = sorted({agent for _, agent, _, _ in found})
    names = (
        {r.id: r.name for r in conn.execute(sa.select(users.c.id, users.c.name).where(users.c.id.in_(agents)))}
        if agents
        else {}
    )
    zero = dict.fromkeys(FIGURES, 0)
    series = empty_series(bucketing, zero, by="agent", values=["all", *agents])
    totals: dict[int, Row] = defaultdict(lambda: dict(zero))
    overall: Row = {"agent": "all", "agent_name": None, **zero}
    for bucket, agent, figure, count in found:
        series[(bucket, agent)][figure] += count
        series[(bucket, "all")][figure] += count
        totals[agent][figure] += count
        overall[figure] += count
    for row in series.values():
        row["agent_name"] = names.get(row["agent"])
    return Result(
        series=list(series.values()),
        totals=[overall, *({"agent": a, "agent_name": names.get(a), **totals[a]} for a in agents)],
    )


REPORT = Report(
    name="agents",
    summary="Replies, notes, claims and resolves per agent",
    run=run,
    filters=frozenset({"team", "agent"}),
)
