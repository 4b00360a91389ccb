"""CSAT: surveys sent, answered, the average rating, its distribution (1-5)
and the response rate (answered / sent), per bucket and channel.

Counted in the database over ``csat_surveys`` (``hub.csat``; the rows of
``kind = 'csat'``, the NPS report reads the others with the same
``survey_counts``), by the moment each survey was sent: a survey answered
the next day counts with the day it went out, so the response rate of a
bucket is that of its own surveys. An erased contact's surveys go with their
conversations (the erasure's cascade): unlike the message figures, they
leave the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.reports.base import Context, Report, Result, Row, empty_series, rate
from hub.reports.params import Bucketing, ReportParams
from hub.reports.sql import bucket_key, in_range
from hub.storage.schema import csat_surveys

RATINGS = (1, 2, 3, 4, 5)


def survey_counts(
    conn: Connection, params: ReportParams, *, kind: str, ratings: Sequence[int], finish: Callable[[Row], Row]
) -> Result:
    """Surveys of ``kind`` sent and answered and the answers per rating (``rating_N``),
    per bucket and channel (``all`` first) and over the range; ``finish`` adds a row's
    figures (average, score...) from its counts. Every row gets ``response_rate``."""
    bucketing = Bucketing(params)
    s = csat_surveys
    inner = sa.select(bucket_key(s.c.sent_at, bucketing).label("bucket"), s.c.channel, s.c.rating).where(
        in_range(s.c.sent_at, params.start, params.end), s.c.kind == kind
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
    zero = dict.fromkeys(("sent", "answered", *(f"rating_{r}" for r in ratings)), 0)
    series = empty_series(bucketing, zero, by="channel", values=["all", *channels])
    totals: dict[str, Row] = {channel: {"channel": channel, **zero} for channel in ["all", *channels]}
    for bucket, channel, rating, count in found:
        for row in (series[(bucket, channel)], series[(bucket, "all")], totals[channel], totals["all"]):
            row["sent"] += count
            if rating is not None:
                row["answered"] += count
                row[f"rating_{rating}"] += count

    def done(row: Row) -> Row:
        row = finish(row)
        row["response_rate"] = rate(row["answered"], row["sent"])
        return row

    return Result(series=[done(row) for row in series.values()], totals=[done(row) for row in totals.values()])


def survey_report(*, kind: str, summary: str, ratings: Sequence[int], finish: Callable[[Row], Row]) -> Report:
    """The report of the surveys of ``kind`` (its name too), filtered by channel."""

    def run(conn: Connection, params: ReportParams, context: Context) -> Result:
        return survey_counts(conn, params, kind=kind, ratings=ratings, finish=finish)

    return Report(name=kind, summary=summary, run=run, filters=frozenset({"channel"}))


def _average(row: Row) -> Row:
    rated = sum(rating * row[f"rating_{rating}"] for rating in RATINGS)
    row["average"] = round(rated / row["answered"], 2) if row["answered"] else None
    return row


REPORT = survey_report(
    kind="csat",
    summary="CSAT: average rating, distribution 1-5 and response rate (answered / sent), by channel",
    ratings=RATINGS,
    finish=_average,
)
