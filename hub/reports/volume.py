"""Volume by channel: customers' messages in, messages out (the bot's, the
agents', the hub's own), and new conversations, per bucket.

Counted entirely in the database. The whole quarter-hours of the range are
read from the counts kept as rows are written (``hub.reports.rollups``:
one GROUP BY over ``report_volume_quarters``, a few rows per quarter-hour);
the edges of a range that starts or ends inside a quarter-hour (and a range
in a zone off the quarter-hour grid) are counted from the rows: one GROUP
BY over messages and one over conversations per source, keyed by (bucket,
channel, ...). Only customer-visible messages count (``kind = message``),
never notes or timeline events. A conversation counts as new in the bucket
it was created in; a reopened one is not new again.
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
from hub.reports.sql import SOURCES, bucket_key, epoch_bucket_key, in_range
from hub.storage.schema import report_volume_quarters

FIGURES = ("inbound", "outbound", "outbound_bot", "outbound_agent", "new_conversations")


def _quarters(conn: Connection, params: ReportParams, bucketing: Bucketing, quarters: tuple[int, int]) -> list[Any]:
    """The rollup's counts of the whole quarter-hours ``[first, last)``, by bucket and channel."""
    r = report_volume_quarters
    inner = sa.select(
        epoch_bucket_key(r.c.quarter * QUARTER_SECONDS, bucketing).label("bucket"),
        r.c.channel,
        *(r.c[figure] for figure in FIGURES),
    ).where(r.c.quarter >= quarters[0], r.c.quarter < quarters[1])
    if params.channel is not None:
        inner = inner.where(r.c.channel == params.channel)
    sub = inner.subquery()
    return list(
        conn.execute(
            sa.select(sub.c.bucket, sub.c.channel, *(sa.func.sum(sub.c[figure]) for figure in FIGURES)).group_by(
                sub.c.bucket, sub.c.channel
            )
        )
    )


def _messages(
    conn: Connection, params: ReportParams, bucketing: Bucketing, start: datetime, end: datetime
) -> list[Any]:
    found: list[Any] = []
    for source in SOURCES:
        m = source.messages
        inner = sa.select(
            bucket_key(m.c.created_at, bucketing).label("bucket"),
            m.c.channel,
            m.c.direction,
            m.c.author_kind,
        ).where(in_range(m.c.created_at, start, end), m.c.kind == MessageKind.MESSAGE.value)
        if params.channel is not None:
            inner = inner.where(m.c.channel == params.channel)
        sub = inner.subquery()
        found += conn.execute(
            sa.select(sub.c.bucket, sub.c.channel, sub.c.direction, sub.c.author_kind, sa.func.count()).group_by(
                sub.c.bucket, sub.c.channel, sub.c.direction, sub.c.author_kind
            )
        ).all()
    return found


def _conversations(
    conn: Connection, params: ReportParams, bucketing: Bucketing, start: datetime, end: datetime
) -> list[Any]:
    found: list[Any] = []
    for source in SOURCES:
        c = source.conversations
        inner = sa.select(bucket_key(c.c.created_at, bucketing).label("bucket"), c.c.channel).where(
            in_range(c.c.created_at, start, end)
        )
        if params.channel is not None:
            inner = inner.where(c.c.channel == params.channel)
        sub = inner.subquery()
        found += conn.execute(
            sa.select(sub.c.bucket, sub.c.channel, sa.func.count()).group_by(sub.c.bucket, sub.c.channel)
        ).all()
    return found


def run(conn: Connection, params: ReportParams, context: Context) -> Result:
    bucketing = Bucketing(params)
    parts = split(bucketing)
    rolled = _quarters(conn, params, bucketing, parts.quarters) if parts.quarters is not None else []
    message_counts: list[Any] = []
    conversation_counts: list[Any] = []
    for start, end in parts.edges:
        message_counts += _messages(conn, params, bucketing, start, end)
        conversation_counts += _conversations(conn, params, bucketing, start, end)
    channels = sorted(
        {row.channel for row in message_counts}
        | {row.channel for row in conversation_counts}
        | {row.channel for row in rolled}
    )
    if params.channel is not None and params.channel not in channels:
        channels.append(params.channel)
    zero = dict.fromkeys(FIGURES, 0)
    series = empty_series(bucketing, zero, by="channel", values=["all", *channels])
    totals: dict[str, Row] = defaultdict(lambda: dict(zero))
    for bucket, channel, direction, author_kind, count in message_counts:
        figures = []
        if direction == Direction.INBOUND.value:
            figures.append("inbound")
        elif direction == Direction.OUTBOUND.value:
            figures.append("outbound")
            if author_kind == AuthorKind.BOT.value:
                figures.append("outbound_bot")
            elif author_kind == AuthorKind.AGENT.value:
                figures.append("outbound_agent")
        for figure in figures:
            series[(bucket, channel)][figure] += count
            series[(bucket, "all")][figure] += count
            totals[channel][figure] += count
    for bucket, channel, *counts in rolled:
        for figure, count in zip(FIGURES, counts, strict=True):
            series[(bucket, channel)][figure] += int(count)
            series[(bucket, "all")][figure] += int(count)
            totals[channel][figure] += int(count)
    for bucket, channel, count in conversation_counts:
        series[(bucket, channel)]["new_conversations"] += count
        series[(bucket, "all")]["new_conversations"] += count
        totals[channel]["new_conversations"] += count
    overall: Row = {"channel": "all", **zero}
    rows = []
    for channel in channels:
        row = {"channel": channel, **totals[channel]}
        rows.append(row)
        for figure in FIGURES:
            overall[figure] += row[figure]
    return Result(series=list(series.values()), totals=[overall, *rows])


REPORT = Report(
    name="volume",
    summary="Messages in and out and new conversations, by channel",
    run=run,
    filters=frozenset({"channel"}),
)
