"""What the bot does on its own: containment, handoffs by reason, and its
automated resolution rate, for the conversations created in the range.

Per conversation (decided in the database from its messages and tickets):

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

BOT_REASONS = frozenset({"urgent-issue", "complaint", "customer-request", "kb-unavailable", "bot-error"})
COUNTS = ("conversations", "bot_handled", "handed_off", "contained", "automated_resolutions")


def reason_key(source: str, reason: str | None) -> str:
    """A ticket's reason as a category, without free text: what the bot said
    (``urgent-issue``...), or where the handoff came from."""
    if source == "bot":
        first = (reason or "").split(";", 1)[0].strip()
        return first if first in BOT_REASONS else "other"
    return {"fallback": "assistant-unavailable", "rule": "keyword-rule"}.get(source, source or "other")


def _conversations_query(source: Source, params: ReportParams, bucketing: Bucketing) -> sa.Select[Any]:
    c, m, t = source.conversations, source.messages, source.tickets
    # Only the replies matter (the bot's and agents'): customers' messages and
    # timeline events are left out of the join, and only the bot's replies
    # have their stored decision read.
    replies = sa.and_(
        m.c.conversation_id == c.c.id,
        m.c.kind == MessageKind.MESSAGE.value,
        m.c.direction == Direction.OUTBOUND.value,
        m.c.author_kind.in_((AuthorKind.BOT.value, AuthorKind.AGENT.value)),
    )
    by_bot = m.c.author_kind == AuthorKind.BOT.value
    per_conversation = (
        sa.select(
            c.c.id,
            bucket_key(c.c.created_at, bucketing).label("bucket"),
            sa.func.max(sa.case((by_bot, 1), else_=0)).label("bot"),
            sa.func.max(sa.case((m.c.author_kind == AuthorKind.AGENT.value, 1), else_=0)).label("agent"),
            sa.func.max(sa.case((sa.and_(by_bot, source.decision == "answer"), 1), else_=0)).label("answered"),
        )
        .select_from(c.outerjoin(m, replies))
        .where(in_range(c.c.created_at, params.start, params.end))
        .group_by(c.c.id, c.c.created_at)
    )
    if params.channel is not None:
        per_conversation = per_conversation.where(c.c.channel == params.channel)
    replied = per_conversation.subquery()
    # Handed off: has a ticket. One join to the conversations with tickets
    # (a hash join on PostgreSQL), not a subquery per conversation.
    ticketed = sa.select(t.c.conversation_id).distinct().subquery()
    sub = (
        sa.select(
            *replied.c,
            sa.case((ticketed.c.conversation_id.is_not(None), 1), else_=0).label("handed"),
        )
        .select_from(replied.outerjoin(ticketed, ticketed.c.conversation_id == replied.c.id))
        .subquery()
    )
    contained = sa.and_(sub.c.bot == 1, sub.c.agent == 0, sub.c.handed == 0)
    return sa.select(
        sub.c.bucket,
        sa.func.count(),
        sa.func.sum(sub.c.bot),
        sa.func.sum(sub.c.handed),
        sa.func.sum(sa.case((contained, 1), else_=0)),
        sa.func.sum(sa.case((sa.and_(contained, sub.c.answered == 1), 1), else_=0)),
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
    for source in SOURCES:
        for bucket, *counts in conn.execute(_conversations_query(source, params, bucketing)):
            for name, count in zip(COUNTS, counts, strict=True):
                series[bucket][name] += int(count or 0)
                overall[name] += int(count or 0)
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
