"""What every report's SQL shares: where the rows come from (the live
timeline and what erasures kept), an instant's epoch second on both
backends, and the bucket an instant falls in (``hub.reports.params``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from hub.reports.params import Bucket, Bucketing
from hub.storage.schema import (
    conversations,
    messages,
    report_erased_conversations,
    report_erased_messages,
    report_erased_tickets,
    tickets,
)


class EpochSeconds(FunctionElement[int]):
    """Whole seconds since 1970 of a UTC datetime column, rounded down."""

    type = sa.BigInteger()
    name = "epoch_seconds"
    inherit_cache = True


@compiles(EpochSeconds, "sqlite")
def _epoch_sqlite(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff'; unixepoch() rounds the fraction,
    # so it is cut off first (23:59:59.7 stays on its day).
    return f"unixepoch(substr({compiler.process(element.clauses, **kw)}, 1, 19))"


@compiles(EpochSeconds, "postgresql")
def _epoch_postgresql(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # date_part is double precision; EXTRACT is numeric since PostgreSQL 14, several times slower.
    return f"CAST(FLOOR(date_part('epoch', {compiler.process(element.clauses, **kw)})) AS BIGINT)"


def bucket_key(column: sa.ColumnElement[datetime], bucketing: Bucketing) -> sa.ColumnElement[int]:
    """The bucket of ``column``'s instant, as ``Bucketing.key_of`` computes it:
    the zone's offset is a CASE over the range's transitions, compared on the
    column itself (an index-friendly, cheap comparison), and the epoch second
    is computed once."""
    return _bucket_of(
        EpochSeconds(column),
        lambda begins: column >= sa.literal(datetime.fromtimestamp(begins, UTC), column.type),
        bucketing,
    )


def epoch_bucket_key(epoch: sa.ColumnElement[int], bucketing: Bucketing) -> sa.ColumnElement[int]:
    """``bucket_key`` of an instant given as epoch seconds (the rollups' quarter-hours)."""
    return _bucket_of(epoch, lambda begins: epoch >= begins, bucketing)


def _bucket_of(
    epoch: sa.ColumnElement[int],
    since: Callable[[int], sa.ColumnElement[bool]],
    bucketing: Bucketing,
) -> sa.ColumnElement[int]:
    hour = bucketing.params.bucket == Bucket.HOUR

    def shift(offset: int) -> int:
        return offset % 3600 if hour else offset

    first = shift(bucketing.first_offset)
    changes = [(begins, shift(offset)) for begins, offset in bucketing.transitions]
    offset: sa.ColumnElement[int]
    if all(value == first for _, value in changes):
        offset = sa.literal(first, sa.Integer)
    else:
        whens = [(since(begins), sa.literal(value, sa.Integer)) for begins, value in reversed(changes)]
        offset = sa.case(*whens, else_=sa.literal(first, sa.Integer))
    local = epoch + offset
    if hour:
        return local // 3600
    days = local // 86400
    return days if bucketing.params.bucket == Bucket.DAY else (days + 3) // 7


def in_range(column: sa.ColumnElement[datetime], start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(column >= start, column < end)


@dataclass(frozen=True, slots=True)
class Source:
    """One place report rows live, with the same column names in each: the
    live timeline, or the facts erasures kept (``hub.reports.erased``). A
    conversation is wholly in one of them (an erasure takes all of a
    contact's), so a report runs its queries once per source and adds up."""

    name: str
    conversations: sa.Table
    messages: sa.Table
    tickets: sa.Table
    decision: sa.ColumnElement[str]  # the bot's decision stored with its reply
    in_reply_to: sa.ColumnElement[int]  # the customer message a bot reply answers


LIVE = Source(
    "live",
    conversations,
    messages,
    tickets,
    decision=messages.c.meta[("decision", "action")].as_string(),
    in_reply_to=messages.c.meta["in_reply_to"].as_integer(),
)
ERASED = Source(
    "erased",
    report_erased_conversations,
    report_erased_messages,
    report_erased_tickets,
    decision=report_erased_messages.c.decision,
    in_reply_to=report_erased_messages.c.in_reply_to,
)
SOURCES = (LIVE, ERASED)
