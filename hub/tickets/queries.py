"""Reads of the tickets table: one ticket, lists, the queue, and what the
SLA scheduler finds due at ``now``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import NotFound
from hub.models import Direction, MessageKind, Priority
from hub.storage.schema import conversations, messages, sla_warnings, tickets
from hub.tickets import routing
from hub.tickets.model import Ticket, TicketStatus, ticket_from_row


def get_ticket(conn: Connection, ticket_id: int) -> Ticket:
    row = conn.execute(sa.select(tickets).where(tickets.c.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"ticket {ticket_id} does not exist")
    return ticket_from_row(row)


_OPEN_TICKET_OF = sa.select(tickets).where(tickets.c.open_conversation_id == sa.bindparam("conversation_id"))


def open_ticket_of(conn: Connection, conversation_id: int) -> Ticket | None:
    row = conn.execute(_OPEN_TICKET_OF, {"conversation_id": conversation_id}).first()
    return ticket_from_row(row) if row is not None else None


def ticket_for_slack_message(conn: Connection, channel: str, ts: str) -> Ticket | None:
    row = conn.execute(
        sa.select(tickets)
        .where(tickets.c.slack_channel == channel, tickets.c.slack_ts == ts)
        .order_by(tickets.c.id.desc())
    ).first()
    return ticket_from_row(row) if row is not None else None


def list_tickets(
    conn: Connection,
    *,
    status: str | None = "open",
    team: str | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    limit: int = 50,
    after_id: int | None = None,
) -> list[Ticket]:
    stmt = sa.select(tickets).order_by(tickets.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(tickets.c.status == TicketStatus(status).value)
    if team:
        stmt = stmt.where(tickets.c.team == team)
    if assignee_id is not None:
        stmt = stmt.where(tickets.c.assignee_id == assignee_id)
    if unassigned:
        stmt = stmt.where(tickets.c.assignee_id.is_(None))
    if after_id is not None:
        stmt = stmt.where(tickets.c.id < after_id)
    return [ticket_from_row(r) for r in conn.execute(stmt)]


def _queue_order() -> tuple[Any, ...]:
    rank = sa.case({p.value: routing.priority_rank(p) for p in Priority}, value=tickets.c.priority, else_=9)
    return rank, tickets.c.id


def queue(conn: Connection, *, team: str | None = None, limit: int = 100) -> list[Ticket]:
    """Unassigned open tickets, most urgent first, then oldest first."""
    stmt = (
        sa.select(tickets)
        .where(tickets.c.status == TicketStatus.OPEN.value, tickets.c.assignee_id.is_(None))
        .order_by(*_queue_order())
        .limit(limit)
    )
    if team:
        stmt = stmt.where(tickets.c.team == team)
    return [ticket_from_row(r) for r in conn.execute(stmt)]


def next_queued(conn: Connection, *, passed: Collection[int] = ()) -> Ticket | None:
    """The head of the queue for a routing pass: the most urgent, then oldest,
    unassigned open ticket that is awake and not in ``passed``. On PostgreSQL
    its row and its conversation's are locked, and a ticket whose rows another
    transaction holds is passed over (``FOR UPDATE SKIP LOCKED``) rather than
    waited for: the pass never waits while holding the routing lock."""
    stmt = (
        sa.select(tickets)
        .join(conversations, conversations.c.id == tickets.c.conversation_id)
        .where(
            tickets.c.status == TicketStatus.OPEN.value,
            tickets.c.assignee_id.is_(None),
            tickets.c.snoozed_until.is_(None),
        )
        .order_by(*_queue_order())
        .limit(1)
    )
    if passed:
        stmt = stmt.where(tickets.c.id.not_in(list(passed)))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=[tickets, conversations], skip_locked=True)
    row = conn.execute(stmt).first()
    return ticket_from_row(row) if row is not None else None


def customer_text(conn: Connection, conversation_id: int, limit: int = 5) -> list[str]:
    found = conn.execute(
        sa.select(messages.c.body)
        .where(
            messages.c.conversation_id == conversation_id,
            messages.c.direction == Direction.INBOUND.value,
            messages.c.kind == MessageKind.MESSAGE.value,
        )
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    return list(reversed([r.body for r in found]))


def recent_conversations(
    conn: Connection, contact_id: int, rules: tuple[routing.Rule, ...], now: datetime
) -> dict[float, int]:
    counts: dict[float, int] = {}
    for rule in rules:
        if rule.enabled and rule.kind == "repeat" and rule.params["hours"] not in counts:
            since = now - timedelta(hours=rule.params["hours"])
            counts[rule.params["hours"]] = conn.execute(
                sa.select(sa.func.count())
                .select_from(conversations)
                .where(conversations.c.contact_id == contact_id, conversations.c.created_at >= since)
            ).scalar_one()
    return counts


def tickets_of(conn: Connection, assignee_id: int) -> list[int]:
    return list(
        conn.execute(
            sa.select(tickets.c.id).where(
                tickets.c.status == TicketStatus.OPEN.value, tickets.c.assignee_id == assignee_id
            )
        ).scalars()
    )


def due_breaches(conn: Connection, now: datetime, limit: int = 200) -> list[tuple[int, str]]:
    base = sa.select(tickets.c.id).where(tickets.c.status == TicketStatus.OPEN.value, tickets.c.sla_paused_at.is_(None))
    first = conn.execute(
        base.where(
            tickets.c.first_response_at.is_(None),
            tickets.c.first_response_breached_at.is_(None),
            tickets.c.first_response_due <= now,
        ).limit(limit)
    ).scalars()
    resolution = conn.execute(
        base.where(tickets.c.resolution_breached_at.is_(None), tickets.c.resolution_due <= now).limit(limit)
    ).scalars()
    return [(i, "first_response") for i in first] + [(i, "resolution") for i in resolution]


def due_warnings(conn: Connection, now: datetime, limit: int = 200) -> list[tuple[int, str]]:
    """(ticket id, target) of the SLA windows whose warning moment has come
    and whose current deadline has no warning yet (``transactions.warn``
    checks again as it claims)."""
    found: list[tuple[int, str]] = []
    for target, due, warn_at, breached in (
        (
            "first_response",
            tickets.c.first_response_due,
            tickets.c.first_response_warn_at,
            tickets.c.first_response_breached_at,
        ),
        ("resolution", tickets.c.resolution_due, tickets.c.resolution_warn_at, tickets.c.resolution_breached_at),
    ):
        warned = sa.exists().where(
            sla_warnings.c.ticket_id == tickets.c.id,
            sla_warnings.c.target == target,
            sla_warnings.c.due_at == due,
        )
        stmt = sa.select(tickets.c.id).where(
            tickets.c.status == TicketStatus.OPEN.value,
            tickets.c.sla_paused_at.is_(None),
            breached.is_(None),
            warn_at <= now,
            due > now,
            ~warned,
        )
        if target == "first_response":
            stmt = stmt.where(tickets.c.first_response_at.is_(None))
        found += [(ticket_id, target) for ticket_id in conn.execute(stmt.limit(limit)).scalars()]
    return found


def due_snoozes(conn: Connection, now: datetime) -> list[int]:
    return list(
        conn.execute(
            sa.select(tickets.c.id).where(tickets.c.status == TicketStatus.OPEN.value, tickets.c.snoozed_until <= now)
        ).scalars()
    )
