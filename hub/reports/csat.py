"""CSAT: surveys sent, answered, the average rating, its distribution (1-5)
and the response rate (answered / sent), per bucket and channel.

Counted in the database over ``csat_surveys`` (``hub.csat``), by the moment
each survey was sent: a survey answered the next day counts with the day it
went out, so the response rate of a bucket is that of its own surveys. An
erased contact's surveys go with their conversations (the erasure's cascade):
unlike the message figures, they leave the report.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.reports.base import Context, Report, Result, Row, empty_series, rate
from hub.reports.params import Bucketing, ReportParams
from hub.reports.sql import bucket_key, in_range
from hub.storage.schema import csat_surveys

RATINGS = (1, 2, 3, 4, 5)
COUNTS = ("sent", "answered", *(f"rating_{r}" for r in RATINGS))


def _finish(row: Row, rating_sum: int) -> Row:
    row["average"] = round(rating_sum / row["answered"], 2) if row["answered"] else None
    row["response_rate"] = rate(row["answered"], row["sent"])
    return row


def run(conn: Connection, params: ReportParams, context: Context) -> Result:
    bucketing = Bucketing(params)
    s = csat_surveys
    inner = sa.select(bucket_key(s.c.sent_at, bucketing).label("bucket"), s.c.channel, s.c.rating).where(
        in_range(s.c.sent_at, params.start, params.end)
    )
    if params.channel is not None:
        inner = inner.where(s.c.channel == params.channel)
    sub = inner.subquery()
    found = conn.execute(
        sa.select(sub.c.bucket, sub.c.channel, sub.c.rating, sa.func.count()).group_by(
            sub.c.bucket, sub.c.channel, sub.c.rating
        )
    ).all()
    channels = sorted({row.channel for row in found})
    if params.channel is not None and params.channel not in channels:
        channels.append(params.channel)
    zero = dict.fromkeys(COUNTS, 0)
    series = empty_series(bucketing, zero, by="channel", values=["all", *channels])
    sums: dict[tuple[object, str], int] = defaultdict(int)
    totals: dict[str, Row] = {channel: {"channel": channel, **zero} for channel in ["all", *channels]}
    total_sums: dict[str, int] = defaultdict(int)
    for bucket, channel, rating, count in found:
        for key in ((bucket, channel), (bucket, "all")):
            series[key]["sent"] += count
            if rating is not None:
                series[key]["answered"] += count
                series[key][f"rating_{rating}"] += count
                sums[key] += rating * count
        for name in (channel, "all"):
            totals[name]["sent"] += count
            if rating is not None:
                totals[name]["answered"] += count
                totals[name][f"rating_{rating}"] += count
                total_sums[name] += rating * count
    rows = [_finish(row, sums[key]) for key, row in series.items()]
    return Result(series=rows, totals=[_finish(row, total_sums[name]) for name, row in totals.items()])


REPORT = Report(
    name="csat",
    summary="CSAT: average rating, distribution 1-5 and response rate (answered / sent), by channel",
    run=run,
    filters=frozenset({"channel"}),
)
