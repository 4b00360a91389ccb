"""What the bot does on its own: containment, handoffs by reason, and its
automated resolution rate, for the conversations created in the range.

Per conversation (facts kept as its messages and tickets are inserted,
``report_bot_conversations``, see ``hub.reports.rollups``: the report reads
one row per conversation, not its messages):

- *bot-handled*: the bot replied at least once;
- *handed off*: it has at least one ticket (a handoff by the bot, a keyword
  rule, the fallback or an agent);
- *contained*: bot-handled, never handed off, and no agent replied: the
  bot resolved it without a human;
- *automated resolution*: contained, and the bot answered from the
  knowledge base at least once (a reply whose stored decision,
  ``meta.decision.action`` as ``bot/actions/answer.py`` sends it, is
  ``answer``), as opposed to a conversation that only got clarifying
  questions before the customer left.

``containment_rate`` and ``automated_resolution_rate`` are over bot-handled
conversations, ``handoff_rate`` over all new conversations. Handoffs by
reason count the tickets opened in the range by their reason's category
(``reason_key``: the bot's reason, ``keyword-rule``, ``assistant-unavailable``
or ``agent``). The bot's turns in the range are counted by decision (a turn
is the bot's answer to one customer message; it may be several messages).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.models import AuthorKind, Direction, MessageKind
from hub.reports.base import Context, Report, Result, Row, empty_series, rate
from hub.reports.params import Bucketing, ReportParams
from hub.reports.sql import SOURCES, Source, bucket_key, in_range
from hub.storage.schema import report_bot_conversations, report_bot_turns

BOT_REASONS = frozenset({"urgent-issue", "complaint", "customer-request", "kb-unavailable", "bot-error"})
COUNTS = ("conversations", "bot_handled", "handed_off", "contained", "automated_resolutions")


def reason_key(source: str, reason: str | None) -> str:
    """A ticket's reason as a category, without free text: what the bot said
    (``urgent-issue``...), or where the handoff came from."""
    if source == "bot":
        first = (reason or "").split(";", 1)[0].strip()
        return first if first in BOT_REASONS else "other"
    return {"fallback": "assistant-unavailable", "rule": "keyword-rule"}.get(source, source or "other")


def _conversations_query(params: ReportParams, bucketing: Bucketing) -> sa.Select[Any]:
    """Per bucket: the conversations created in it and how many of them the bot
    handled, were handed off, contained and resolved by the bot, from the
    facts kept per conversation (``hub.reports.rollups``: live and erased alike)."""
    f = report_bot_conversations
    contained = sa.and_(f.c.bot_replied == 1, f.c.agent_replied == 0, f.c.handed_off == 0)
    inner = sa.select(
        bucket_key(f.c.created_at, bucketing).label("bucket"),
        f.c.bot_replied,
        f.c.handed_off,
        sa.case((contained, 1), else_=0).label("contained"),
        sa.case((sa.and_(contained, f.c.answered == 1), 1), else_=0).label("automated"),
    ).where(in_range(f.c.created_at, params.start, params.end))
    if params.channel is not None:
        inner = inner.where(f.c.channel == params.channel)
    sub = inner.subquery()
    return sa.select(
        sub.c.bucket,
        sa.func.count(),
        sa.func.sum(sub.c.bot_replied),
        sa.func.sum(sub.c.handed_off),
        sa.func.sum(sub.c.contained),
        sa.func.sum(sub.c.automated),
    ).group_by(sub.c.bucket)


def _reasons_query(source: Source, params: ReportParams) -> sa.Select[Any]:
    t, c = source.tickets, source.conversations
    stmt = (
        sa.select(t.c.source, t.c.reason, sa.func.count())
        .select_from(t.join(c, c.c.id == t.c.conversation_id))
        .where(in_range(t.c.created_at, params.start, params.end))
        .group_by(t.c.source, t.c.reason)
    )
    return stmt.where(c.c.channel == params.channel) if params.channel is not None else stmt


def _decisions_query(source: Source, params: ReportParams) -> sa.Select[Any]:
    if source.name == "live":
        # The live replies' decisions and turns, read out of ``meta`` when they
        # were inserted (``report_bot_turns``): a covering index range, where
        # a turn's first reply in the range is the one whose reply before
        # (``since``, kept by triggers) is none or before the range.
        b = report_bot_turns
        stmt = (
            sa.select(b.c.decision, sa.func.count())
            .where(
                in_range(b.c.created_at, params.start, params.end),
                sa.or_(b.c.since.is_(None), b.c.since < params.start),
            )
            .group_by(b.c.decision)
        )
        return stmt.where(b.c.channel == params.channel) if params.channel is not None else stmt
    m = source.messages
    turn = sa.func.coalesce(source.in_reply_to, -m.c.id)
    inner = sa.select(source.decision.label("decision"), turn.label("turn")).where(
        in_range(m.c.created_at, params.start, params.end),
        m.c.author_kind == AuthorKind.BOT.value,
        m.c.kind == MessageKind.MESSAGE.value,
        m.c.direction == Direction.OUTBOUND.value,
    )
    if params.channel is not None:
        inner = inner.where(m.c.channel == params.channel)
    sub = inner.subquery()
    return sa.select(sub.c.decision, sa.func.count(sa.distinct(sub.c.turn))).group_by(sub.c.decision)


def _rates(row: Row) -> Row:
    row["containment_rate"] = rate(row["contained"], row["bot_handled"])
    row["automated_resolution_rate"] = rate(row["automated_resolutions"], row["bot_handled"])
    row["handoff_rate"] = rate(row["handed_off"], row["conversations"])
    return row


def run(conn: Connection, params: ReportParams, context: Context) -> Result:
    bucketing = Bucketing(params)
    zero = dict.fromkeys(COUNTS, 0)
    series = empty_series(bucketing, zero)
    overall: Row = dict(zero)
    reasons: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    for bucket, *counts in conn.execute(_conversations_query(params, bucketing)):
        for name, count in zip(COUNTS, counts, strict=True):
            series[bucket][name] += int(count or 0)
            overall[name] += int(count or 0)
    for source in SOURCES:
        for origin, reason, count in conn.execute(_reasons_query(source, params)):
            reasons[reason_key(origin, reason)] += count
        for decision, count in conn.execute(_decisions_query(source, params)):
            decisions[decision or "none"] += count
    handoffs = sum(reasons.values())
    by_reason: dict[str, list[Row]] = {"reason": [], "decision": []}
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        by_reason["reason"].append({"reason": reason, "handoffs": count, "share": rate(count, handoffs)})
    turns = sum(decisions.values())
    for decision, count in sorted(decisions.items(), key=lambda item: (-item[1], item[0])):
        by_reason["decision"].append({"decision": decision, "turns": count, "share": rate(count, turns)})
    return Result(
        series=[_rates(row) for row in series.values()],
        totals=[_rates({**overall, "handoffs": handoffs, "bot_turns": turns})],
        groups=by_reason,
    )


REPORT = Report(
    name="bot",
    summary="Bot containment, automated resolutions, handoffs by reason, the bot's decisions",
    run=run,
    filters=frozenset({"channel"}),
)
