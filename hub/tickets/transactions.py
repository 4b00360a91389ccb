"""Tickets: a handed-off conversation, its routing and its SLA clock.

State machine (one open ticket per conversation at most)::

    (handoff) --> open/queued --(assign, claim)--> open/assigned --(resolve)--> resolved
                     ^                                 |
                     +----(unassign, agent off duty)----+

The conversation stays the source of truth for priority, assignee and status
(``hub.models``); the ticket keeps copies of priority and assignee so the
queue, the load counts and the SLA scan read one table, and every change is
made to both in ONE transaction here (``conversations.update_conversation``
records the timeline events). ``TicketService`` publishes the events after
the commit. Changes made elsewhere (``PATCH /conversations/{id}``) reach the
ticket through ``ConversationUpdated`` (``sync_from_conversation``), which is
a no-op for the changes this module made itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.conversations import contacts as contacts_tx
from hub.conversations import transactions as conversations_tx
from hub.errors import Conflict, InvalidInput, NotFound
from hub.events import (
    ConversationUpdated,
    Event,
    HandoffRequested,
    MessageQueued,
    MessageReceived,
    utcnow,
)
from hub.models import (
    AuthorKind,
    ConversationStatus,
    Direction,
    Handler,
    MessageKind,
    Priority,
    StrEnum,
    _Serialisable,
)
from hub.storage import insert_ignore
from hub.storage.schema import conversations, messages, routing_rules, tickets
from hub.tickets import agents as agents_tx
from hub.tickets import routing, sla

if TYPE_CHECKING:
    from hub.bus import EventBus
    from hub.config import Settings
    from hub.storage import Database

log = logging.getLogger(__name__)

EXTRAS_KEY = "tickets"  # app[keys.EXTRAS]["tickets"] -> TicketService


class TicketStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Ticket(_Serialisable):
    id: int
    conversation_id: int
    contact_id: int
    status: TicketStatus
    priority: Priority
    assignee_id: int | None
    team: str
    source: str
    reason: str
    summary: str
    kb_hits: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    first_response_at: datetime | None
    first_response_due: datetime | None
    resolution_due: datetime | None
    sla_paused_at: datetime | None
    first_response_breached_at: datetime | None
    resolution_breached_at: datetime | None
    escalations: int
    snoozed_until: datetime | None
    slack_channel: str | None
    slack_ts: str | None

    @property
    def sla_due(self) -> datetime | None:
        """The next deadline that still matters."""
        if self.status != TicketStatus.OPEN:
            return None
        if self.first_response_at is None and self.first_response_due is not None:
            return self.first_response_due
        return self.resolution_due


def _ticket(row: Any) -> Ticket:
    return Ticket(
        id=row.id,
        conversation_id=row.conversation_id,
        contact_id=row.contact_id,
        status=TicketStatus(row.status),
        priority=Priority(row.priority),
        assignee_id=row.assignee_id,
        team=row.team,
        source=row.source,
        reason=row.reason,
        summary=row.summary,
        kb_hits=list(row.kb_hits or []),
        created_at=row.created_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
        first_response_at=row.first_response_at,
        first_response_due=row.first_response_due,
        resolution_due=row.resolution_due,
        sla_paused_at=row.sla_paused_at,
        first_response_breached_at=row.first_response_breached_at,
        resolution_breached_at=row.resolution_breached_at,
        escalations=row.escalations,
        snoozed_until=row.snoozed_until,
        slack_channel=row.slack_channel,
        slack_ts=row.slack_ts,
    )


# --- events -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TicketOpened(Event):
    name: ClassVar[str] = "ticket-opened"
    ticket_id: int
    conversation_id: int
    priority: str
    team: str
    assignee_id: int | None


@dataclass(frozen=True, kw_only=True)
class TicketChanged(Event):
    """Priority, assignee, status, snooze or SLA state of a ticket changed."""

    name: ClassVar[str] = "ticket-changed"
    ticket_id: int
    conversation_id: int
    changes: dict[str, Any]
    actor_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class SlaBreached(Event):
    name: ClassVar[str] = "sla-breached"
    ticket_id: int
    conversation_id: int
    target: str  # first_response | resolution
    team: str
    priority: str
    assignee_id: int | None


# --- transactions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """What a transaction needs from settings and the rule cache."""

    rules: tuple[routing.Rule, ...]
    slas: dict[Priority, sla.Policy]
    default_team: str
    hours: sla.BusinessHours | None = None

    def deadlines(
        self, priority: Priority | str, created_at: datetime, paused: float
    ) -> tuple[datetime | None, datetime | None]:
        return sla.deadlines(self.slas, priority, created_at, paused, self.hours)


@dataclass(slots=True)
class Change:
    """A transaction's outcome: the ticket and what to publish after commit."""

    ticket: Ticket
    created: bool = False
    conversation_changes: dict[str, Any] = field(default_factory=dict)
    ticket_changes: dict[str, Any] = field(default_factory=dict)
    breached: str | None = None


def get_ticket(conn: Connection, ticket_id: int) -> Ticket:
    row = conn.execute(sa.select(tickets).where(tickets.c.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"ticket {ticket_id} does not exist")
    return _ticket(row)


_OPEN_TICKET_OF = sa.select(tickets).where(tickets.c.open_conversation_id == sa.bindparam("conversation_id"))


def open_ticket_of(conn: Connection, conversation_id: int) -> Ticket | None:
    row = conn.execute(_OPEN_TICKET_OF, {"conversation_id": conversation_id}).first()
    return _ticket(row) if row is not None else None


def ticket_for_slack_message(conn: Connection, channel: str, ts: str) -> Ticket | None:
    row = conn.execute(
        sa.select(tickets)
        .where(tickets.c.slack_channel == channel, tickets.c.slack_ts == ts)
        .order_by(tickets.c.id.desc())
    ).first()
    return _ticket(row) if row is not None else None


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
    return [_ticket(r) for r in conn.execute(stmt)]


def queue(conn: Connection, *, team: str | None = None, limit: int = 100) -> list[Ticket]:
    """Unassigned open tickets, most urgent first, then oldest first."""
    order = sa.case({p.value: routing.priority_rank(p) for p in Priority}, value=tickets.c.priority, else_=9)
    stmt = (
        sa.select(tickets)
        .where(tickets.c.status == TicketStatus.OPEN.value, tickets.c.assignee_id.is_(None))
        .order_by(order, tickets.c.id)
        .limit(limit)
    )
    if team:
        stmt = stmt.where(tickets.c.team == team)
    return [_ticket(r) for r in conn.execute(stmt)]


def _customer_text(conn: Connection, conversation_id: int, limit: int = 5) -> list[str]:
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


def _recent_conversations(
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


def _update(conn: Connection, ticket_id: int, **values: Any) -> Ticket:
    values.setdefault("updated_at", utcnow())
    conn.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(**values))
    return get_ticket(conn, ticket_id)


def _conversation(
    conn: Connection, change: Change, conversation_id: int, changes: dict[str, Any], actor_id: int | None
) -> None:
    _, applied = conversations_tx.update_conversation(conn, conversation_id, changes, actor_id=actor_id)
    change.conversation_changes.update(applied)


def _auto_assign(
    conn: Connection, change: Change, *, exclude: tuple[int, ...] = (), actor_id: int | None = None
) -> None:
    ticket = change.ticket
    agent = routing.choose(
        agents_tx.candidate_loads(conn, team=ticket.team, urgent=ticket.priority == Priority.URGENT),
        team=ticket.team,
        priority=ticket.priority,
        exclude=exclude,
    )
    if agent is not None:
        _set_assignee(conn, change, agent.user_id, actor_id=actor_id)


def _set_assignee(conn: Connection, change: Change, assignee_id: int | None, *, actor_id: int | None) -> None:
    ticket = change.ticket
    if ticket.assignee_id == assignee_id:
        return
    if ticket.status == TicketStatus.OPEN:
        agents_tx.book(conn, ticket.assignee_id, -1)
        agents_tx.book(conn, assignee_id, +1, stamp=True, team=ticket.team)
    change.ticket = _update(conn, ticket.id, assignee_id=assignee_id)
    change.ticket_changes["assignee_id"] = assignee_id
    _conversation(conn, change, ticket.conversation_id, {"assignee_id": assignee_id}, actor_id)


def open_ticket(
    conn: Connection,
    conversation_id: int,
    *,
    policy: Policy,
    priority: Priority | str = Priority.NORMAL,
    reason: str = "",
    source: str = "agent",
    kb_hits: list[dict[str, Any]] | None = None,
    team: str | None = None,
    actor_id: int | None = None,
) -> Change:
    """Open (or, when one is open, escalate) the conversation's ticket, route it."""
    now = utcnow()
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    contact = contacts_tx.get_contact(conn, conversation.contact_id)
    texts = _customer_text(conn, conversation_id)
    urgency = routing.evaluate(
        policy.rules,
        base=priority,
        text="\n".join(texts),
        attributes=contact.attributes,
        recent_conversations=_recent_conversations(conn, contact.id, policy.rules, now),
    )
    existing = open_ticket_of(conn, conversation_id)
    if existing is not None:
        change = Change(ticket=existing)
        wanted = routing.higher(existing.priority, urgency.priority)
        if wanted != existing.priority:
            _set_priority(conn, change, wanted, policy, actor_id=actor_id)
        return change
    summary = (conversation.subject or (texts[-1] if texts else reason) or "")[:300]
    reasons = "; ".join(filter(None, [reason, *urgency.reasons]))
    team_name = team or urgency.team or policy.default_team
    first_due, resolution_due = policy.deadlines(urgency.priority, now, 0.0)
    new_id = conn.execute(
        insert_ignore(conn, tickets)
        .values(
            conversation_id=conversation_id,
            contact_id=conversation.contact_id,
            open_conversation_id=conversation_id,
            status=TicketStatus.OPEN.value,
            priority=urgency.priority.value,
            team=team_name,
            source=source,
            reason=reasons[:2000],
            summary=summary,
            kb_hits=list(kb_hits or [])[:5],
            created_at=now,
            updated_at=now,
            first_response_due=first_due,
            resolution_due=resolution_due,
            sla_paused_seconds=0.0,
            escalations=0,
        )
        .on_conflict_do_nothing()
        .returning(tickets.c.id)
    ).scalar_one_or_none()
    if new_id is None:  # a concurrent handoff of the same conversation won
        return Change(ticket=open_ticket_of(conn, conversation_id))  # type: ignore[arg-type]
    change = Change(ticket=get_ticket(conn, new_id), created=True)
    changes: dict[str, Any] = {"handler": Handler.HUMAN.value, "priority": urgency.priority.value}
    if conversation.status in (ConversationStatus.RESOLVED, ConversationStatus.SNOOZED):
        changes["status"] = ConversationStatus.OPEN.value
    _conversation(conn, change, conversation_id, changes, actor_id)
    conversations_tx.add_event(
        conn,
        conversations_tx.get_conversation(conn, conversation_id),
        f"Ticket #{new_id} opened ({source}{': ' + reasons if reasons else ''}), team {team_name}",
        event="ticket-opened",
        actor_id=actor_id,
        meta={"ticket_id": new_id, "priority": urgency.priority.value, "team": team_name, "source": source},
        now=now,
    )
    _auto_assign(conn, change, actor_id=actor_id)
    return change


def _set_priority(
    conn: Connection, change: Change, priority: Priority, policy: Policy | None, *, actor_id: int | None
) -> None:
    ticket = change.ticket
    if ticket.priority == priority:
        return
    values: dict[str, Any] = {"priority": priority.value}
    if policy is not None:
        paused = conn.execute(sa.select(tickets.c.sla_paused_seconds).where(tickets.c.id == ticket.id)).scalar_one()
        first_due, resolution_due = policy.deadlines(priority, ticket.created_at, paused)
        values.update(first_response_due=first_due, resolution_due=resolution_due)
    change.ticket = _update(conn, ticket.id, **values)
    change.ticket_changes["priority"] = priority.value
    _conversation(conn, change, ticket.conversation_id, {"priority": priority.value}, actor_id)


def _open(conn: Connection, ticket_id: int) -> Ticket:
    ticket = get_ticket(conn, ticket_id)
    if ticket.status != TicketStatus.OPEN:
        raise Conflict(f"ticket {ticket_id} is already resolved")
    return ticket


def assign(
    conn: Connection, ticket_id: int, assignee_id: int | None, *, actor_id: int | None, only_if_unassigned: bool = False
) -> Change:
    ticket = _open(conn, ticket_id)
    if only_if_unassigned and ticket.assignee_id not in (None, assignee_id):
        raise Conflict(f"ticket {ticket_id} is already assigned to user {ticket.assignee_id}")
    change = Change(ticket=ticket)
    _set_assignee(conn, change, assignee_id, actor_id=actor_id)
    return change


def set_priority(
    conn: Connection, ticket_id: int, priority: Priority | str, *, policy: Policy, actor_id: int | None
) -> Change:
    try:
        level = Priority(priority)
    except ValueError:
        raise InvalidInput("priority must be one of urgent, high, normal, low") from None
    change = Change(ticket=_open(conn, ticket_id))
    _set_priority(conn, change, level, policy, actor_id=actor_id)
    return change


def resolve(conn: Connection, ticket_id: int, *, actor_id: int | None, touch_conversation: bool = True) -> Change:
    ticket = get_ticket(conn, ticket_id)
    change = Change(ticket=ticket)
    if ticket.status == TicketStatus.RESOLVED:
        return change
    now = utcnow()
    agents_tx.book(conn, ticket.assignee_id, -1)
    change.ticket = _update(
        conn,
        ticket_id,
        status=TicketStatus.RESOLVED.value,
        open_conversation_id=None,
        resolved_at=now,
        snoozed_until=None,
        updated_at=now,
    )
    change.ticket_changes["status"] = TicketStatus.RESOLVED.value
    if touch_conversation:
        _conversation(conn, change, ticket.conversation_id, {"status": ConversationStatus.RESOLVED.value}, actor_id)
    return change


def snooze(conn: Connection, ticket_id: int, until: datetime, *, actor_id: int | None) -> Change:
    change = Change(ticket=_open(conn, ticket_id))
    change.ticket = _update(conn, ticket_id, snoozed_until=until)
    change.ticket_changes["snoozed_until"] = until.isoformat()
    _conversation(conn, change, change.ticket.conversation_id, {"status": ConversationStatus.SNOOZED.value}, actor_id)
    return change


def _pause(conn: Connection, change: Change, now: datetime) -> None:
    if change.ticket.sla_paused_at is None:
        change.ticket = _update(conn, change.ticket.id, sla_paused_at=now)
        change.ticket_changes["sla_paused"] = True


def _resume(conn: Connection, change: Change, policy: Policy, now: datetime) -> None:
    ticket = change.ticket
    if ticket.sla_paused_at is None:
        return
    paused = conn.execute(sa.select(tickets.c.sla_paused_seconds).where(tickets.c.id == ticket.id)).scalar_one()
    paused += sla.paused_for(ticket.sla_paused_at, now, policy.hours)
    first_due, resolution_due = policy.deadlines(ticket.priority, ticket.created_at, paused)
    change.ticket = _update(
        conn,
        ticket.id,
        sla_paused_at=None,
        sla_paused_seconds=paused,
        first_response_due=first_due,
        resolution_due=resolution_due,
    )
    change.ticket_changes["sla_paused"] = False


def sync_from_conversation(
    conn: Connection, conversation_id: int, changes: dict[str, Any], *, policy: Policy
) -> Change | None:
    """Bring the open ticket in line with a conversation change made anywhere."""
    ticket = open_ticket_of(conn, conversation_id)
    if ticket is None:
        return None
    change = Change(ticket=ticket)
    now = utcnow()
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    if "assignee_id" in changes and conversation.assignee_id != ticket.assignee_id:
        agents_tx.book(conn, ticket.assignee_id, -1)
        agents_tx.book(conn, conversation.assignee_id, +1, stamp=True, team=ticket.team)
        change.ticket = _update(conn, ticket.id, assignee_id=conversation.assignee_id)
        change.ticket_changes["assignee_id"] = conversation.assignee_id
    if "priority" in changes and conversation.priority != change.ticket.priority:
        paused = conn.execute(sa.select(tickets.c.sla_paused_seconds).where(tickets.c.id == ticket.id)).scalar_one()
        first_due, resolution_due = policy.deadlines(conversation.priority, ticket.created_at, paused)
        change.ticket = _update(
            conn,
            ticket.id,
            priority=conversation.priority.value,
            first_response_due=first_due,
            resolution_due=resolution_due,
        )
        change.ticket_changes["priority"] = conversation.priority.value
    if "status" in changes:
        if conversation.status == ConversationStatus.RESOLVED:
            resolved = resolve(conn, ticket.id, actor_id=None, touch_conversation=False)
            change.ticket, change.ticket_changes["status"] = resolved.ticket, TicketStatus.RESOLVED.value
        elif conversation.status == ConversationStatus.PENDING:
            _pause(conn, change, now)
        else:
            _resume(conn, change, policy, now)
            if conversation.status == ConversationStatus.OPEN and change.ticket.snoozed_until is not None:
                change.ticket = _update(conn, ticket.id, snoozed_until=None)
                change.ticket_changes["snoozed_until"] = None
    return change if change.ticket_changes or changes.get("status") else None


def customer_wrote(conn: Connection, conversation_id: int, *, policy: Policy) -> Change | None:
    """Ingest reopens a pending/snoozed conversation without an event: resume the clock."""
    ticket = open_ticket_of(conn, conversation_id)
    if ticket is None:
        return None
    change = Change(ticket=ticket)
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    if conversation.status == ConversationStatus.OPEN:
        _resume(conn, change, policy, utcnow())
        if change.ticket.snoozed_until is not None:
            change.ticket = _update(conn, ticket.id, snoozed_until=None)
            change.ticket_changes["snoozed_until"] = None
    return change


def record_first_response(conn: Connection, conversation_id: int, at: datetime) -> Ticket | None:
    done = conn.execute(
        sa.update(tickets)
        .where(tickets.c.open_conversation_id == conversation_id, tickets.c.first_response_at.is_(None))
        .values(first_response_at=at, updated_at=at)
    )
    return open_ticket_of(conn, conversation_id) if done.rowcount else None


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


def escalate(
    conn: Connection, ticket_id: int, target: str, now: datetime, *, bump_priority: bool, reassign: bool
) -> Change | None:
    """Record a breach once (the conditional update is the claim) and escalate."""
    column = tickets.c.first_response_breached_at if target == "first_response" else tickets.c.resolution_breached_at
    due = tickets.c.first_response_due if target == "first_response" else tickets.c.resolution_due
    still_due = [
        tickets.c.id == ticket_id,
        column.is_(None),
        due <= now,
        tickets.c.status == TicketStatus.OPEN.value,
        tickets.c.sla_paused_at.is_(None),
    ]
    if target == "first_response":
        still_due.append(tickets.c.first_response_at.is_(None))  # an agent may have just answered
    claimed = conn.execute(
        sa.update(tickets)
        .where(*still_due)
        .values({column.name: now, "escalations": tickets.c.escalations + 1, "updated_at": now})
    )
    if claimed.rowcount == 0:
        return None
    ticket = get_ticket(conn, ticket_id)
    change = Change(ticket=ticket, breached=target)
    change.ticket_changes[f"{target}_breached"] = True
    label = "first response" if target == "first_response" else "resolution"
    conversations_tx.add_event(
        conn,
        conversations_tx.get_conversation(conn, ticket.conversation_id),
        f"SLA breached: {label} was due {(ticket.first_response_due if target == 'first_response' else ticket.resolution_due):%Y-%m-%d %H:%M} UTC",
        event="sla-breached",
        meta={"ticket_id": ticket_id, "target": target},
        now=now,
    )
    if bump_priority:
        # Deadlines keep the original policy: a bump must not make the other
        # target breach at once.
        _set_priority(conn, change, routing.bump(ticket.priority), None, actor_id=None)
    if reassign and change.ticket.assignee_id is not None:
        previous = change.ticket.assignee_id
        _auto_assign(conn, change, exclude=(previous,))
    elif change.ticket.assignee_id is None:
        _auto_assign(conn, change)
    return change


def due_snoozes(conn: Connection, now: datetime) -> list[int]:
    return list(
        conn.execute(
            sa.select(tickets.c.id).where(tickets.c.status == TicketStatus.OPEN.value, tickets.c.snoozed_until <= now)
        ).scalars()
    )


def wake(conn: Connection, ticket_id: int) -> Change | None:
    ticket = get_ticket(conn, ticket_id)
    if ticket.status != TicketStatus.OPEN or ticket.snoozed_until is None:
        return None
    change = Change(ticket=_update(conn, ticket_id, snoozed_until=None))
    change.ticket_changes["snoozed_until"] = None
    conversation = conversations_tx.get_conversation(conn, ticket.conversation_id)
    if conversation.status == ConversationStatus.SNOOZED:
        _conversation(conn, change, ticket.conversation_id, {"status": ConversationStatus.OPEN.value}, None)
    return change


def tickets_of(conn: Connection, assignee_id: int) -> list[int]:
    return list(
        conn.execute(
            sa.select(tickets.c.id).where(
                tickets.c.status == TicketStatus.OPEN.value, tickets.c.assignee_id == assignee_id
            )
        ).scalars()
    )


def reroute(conn: Connection, ticket_id: int, *, exclude: tuple[int, ...]) -> Change | None:
    """Give an open ticket to someone else (or back to the queue)."""
    ticket = get_ticket(conn, ticket_id)
    if ticket.status != TicketStatus.OPEN:
        return None
    change = Change(ticket=ticket)
    agent = routing.choose(
        agents_tx.candidate_loads(conn, team=ticket.team, urgent=ticket.priority == Priority.URGENT),
        team=ticket.team,
        priority=ticket.priority,
        exclude=exclude,
    )
    _set_assignee(conn, change, agent.user_id if agent is not None else None, actor_id=None)
    return change


def assign_queued(conn: Connection, limit: int = 50) -> list[Change]:
    """Route queued tickets (most urgent first) to agents who have room."""
    done = []
    for ticket in queue(conn, limit=limit):
        change = Change(ticket=ticket)
        _auto_assign(conn, change)
        if change.ticket.assignee_id is None:
            continue
        done.append(change)
    return done


# --- rules -----------------------------------------------------------------------


def list_rules(conn: Connection) -> list[routing.Rule]:
    return [
        routing.Rule(
            id=r.id,
            kind=r.kind,
            params=dict(r.params),
            priority=Priority(r.priority),
            team=r.team,
            handoff=r.handoff,
            enabled=r.enabled,
        )
        for r in conn.execute(sa.select(routing_rules).order_by(routing_rules.c.id))
    ]


def add_rule(conn: Connection, body: dict[str, Any]) -> routing.Rule:
    kind, params, priority = routing.validate_rule(body.get("kind"), body.get("params"), body.get("priority"))
    team = body.get("team")
    if team is not None and (not isinstance(team, str) or not team.strip()):
        raise InvalidInput("team must be a non-empty string")
    handoff = body.get("handoff", True)
    if not isinstance(handoff, bool):
        raise InvalidInput("handoff must be true or false")
    new_id = conn.execute(
        sa.insert(routing_rules)
        .values(
            kind=kind,
            params=params,
            priority=priority.value,
            team=team,
            handoff=handoff,
            enabled=True,
            created_at=utcnow(),
        )
        .returning(routing_rules.c.id)
    ).scalar_one()
    return next(r for r in list_rules(conn) if r.id == new_id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    if conn.execute(sa.delete(routing_rules).where(routing_rules.c.id == rule_id)).rowcount == 0:
        raise NotFound(f"rule {rule_id} does not exist")


# --- the service -------------------------------------------------------------------


class TicketService:
    """Ticket use cases; publishes after every commit. Subscribes to the bus."""

    def __init__(self, db: Database, bus: EventBus, settings: Settings) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings
        self.slas = sla.parse_policies(settings.sla_policies)
        self.hours = sla.BusinessHours.parse(settings.sla_business_hours, settings.sla_timezone, settings.sla_holidays)
        self._policy: Policy | None = None  # rebuilt when the routing rules change
        self._unsubscribe: list[Any] = []
        self.scheduler = sla.SlaScheduler(self.check_due, interval=settings.sla_check_interval)

    # --- wiring ------------------------------------------------------------------
    def subscribe(self) -> None:
        self._unsubscribe = [
            self.bus.subscribe(HandoffRequested, self._on_handoff),  # type: ignore[arg-type]
            self.bus.subscribe(MessageReceived, self._on_message),  # type: ignore[arg-type]
            self.bus.subscribe(MessageQueued, self._on_queued),  # type: ignore[arg-type]
            self.bus.subscribe(ConversationUpdated, self._on_conversation),  # type: ignore[arg-type]
        ]

    def unsubscribe(self) -> None:
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []

    async def policy(self) -> Policy:
        policy = self._policy
        if policy is None:
            rules = tuple(await self.db.read(list_rules))
            policy = Policy(
                rules=rules, slas=self.slas, default_team=self.settings.ticket_default_team, hours=self.hours
            )
            self._policy = policy
        return policy

    def rules_changed(self) -> None:
        self._policy = None

    async def _publish(self, change: Change | None, *, actor_id: int | None = None) -> None:
        if change is None:
            return
        ticket = change.ticket
        if change.conversation_changes:
            await self.bus.publish(
                ConversationUpdated(
                    conversation_id=ticket.conversation_id, changes=change.conversation_changes, actor_id=actor_id
                )
            )
        if change.created:
            await self.bus.publish(
                TicketOpened(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    priority=ticket.priority.value,
                    team=ticket.team,
                    assignee_id=ticket.assignee_id,
                )
            )
        elif change.ticket_changes:
            await self.bus.publish(
                TicketChanged(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    changes=change.ticket_changes,
                    actor_id=actor_id,
                )
            )
        if change.breached:
            await self.bus.publish(
                SlaBreached(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    target=change.breached,
                    team=ticket.team,
                    priority=ticket.priority.value,
                    assignee_id=ticket.assignee_id,
                )
            )
        if change.created or "priority" in change.ticket_changes or "sla_paused" in change.ticket_changes:
            self.scheduler.wake()

    # --- use cases -----------------------------------------------------------------
    async def open(
        self,
        conversation_id: int,
        *,
        priority: Priority | str = Priority.NORMAL,
        reason: str = "",
        source: str = "agent",
        kb_hits: list[dict[str, Any]] | None = None,
        team: str | None = None,
        actor_id: int | None = None,
    ) -> Ticket:
        try:
            priority = Priority(priority)
        except ValueError:
            raise InvalidInput("priority must be one of urgent, high, normal, low") from None
        policy = await self.policy()
        change = await self.db.write(
            lambda conn: open_ticket(
                conn,
                conversation_id,
                policy=policy,
                priority=priority,
                reason=reason,
                source=source,
                kb_hits=kb_hits,
                team=team,
                actor_id=actor_id,
            )
        )
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def get(self, ticket_id: int) -> Ticket:
        return await self.db.read(get_ticket, ticket_id)

    async def claim(self, ticket_id: int, agent_id: int) -> Ticket:
        change = await self.db.write(assign, ticket_id, agent_id, actor_id=agent_id, only_if_unassigned=True)
        await self._publish(change, actor_id=agent_id)
        return change.ticket

    async def assign(self, ticket_id: int, assignee_id: int | None, *, actor_id: int | None) -> Ticket:
        if assignee_id is not None:
            await self.db.read(
                agents_tx.get_agent,
                assignee_id,
                default_team=self.settings.ticket_default_team,
                default_capacity=self.settings.ticket_default_capacity,
            )
        change = await self.db.write(assign, ticket_id, assignee_id, actor_id=actor_id)
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def resolve(self, ticket_id: int, *, actor_id: int | None) -> Ticket:
        change = await self.db.write(resolve, ticket_id, actor_id=actor_id)
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def set_priority(self, ticket_id: int, priority: str, *, actor_id: int | None) -> Ticket:
        policy = await self.policy()
        change = await self.db.write(set_priority, ticket_id, priority, policy=policy, actor_id=actor_id)
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def snooze(self, ticket_id: int, *, minutes: float | None = None, actor_id: int | None) -> Ticket:
        until = utcnow() + timedelta(minutes=minutes if minutes is not None else self.settings.snooze_minutes)
        change = await self.db.write(snooze, ticket_id, until, actor_id=actor_id)
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def set_duty(self, user_id: int, on_duty: bool, *, actor_id: int | None) -> agents_tx.Agent:
        """On duty: pick up queued tickets. Off duty: hand open tickets to others (or the queue)."""
        await self.update_agent(user_id, {"on_duty": on_duty})
        if on_duty:
            for change in await self.db.write(assign_queued):
                await self._publish(change)
        else:
            for ticket_id in await self.db.read(tickets_of, user_id):
                await self._publish(await self.db.write(reroute, ticket_id, exclude=(user_id,)), actor_id=actor_id)
        return await self.get_agent(user_id)

    async def update_agent(self, user_id: int, changes: dict[str, Any]) -> agents_tx.Agent:
        return await self.db.write(
            agents_tx.update_profile,
            user_id,
            changes,
            default_team=self.settings.ticket_default_team,
            default_capacity=self.settings.ticket_default_capacity,
        )

    async def get_agent(self, user_id: int) -> agents_tx.Agent:
        return await self.db.read(
            agents_tx.get_agent,
            user_id,
            default_team=self.settings.ticket_default_team,
            default_capacity=self.settings.ticket_default_capacity,
        )

    async def agent_for_slack_user(self, slack_user_id: str) -> agents_tx.Agent | None:
        return await self.db.read(
            agents_tx.agent_for_slack_user,
            slack_user_id,
            default_team=self.settings.ticket_default_team,
            default_capacity=self.settings.ticket_default_capacity,
        )

    async def list_agents(self) -> list[agents_tx.Agent]:
        return await self.db.read(
            agents_tx.list_agents,
            default_team=self.settings.ticket_default_team,
            default_capacity=self.settings.ticket_default_capacity,
        )

    async def anyone_on_duty(self) -> bool:
        """For ``WebchatChannel.agents_online``: is any agent on duty right now?"""
        return await self.db.read(agents_tx.anyone_on_duty)

    async def queue(self, *, team: str | None = None, limit: int = 100) -> list[Ticket]:
        return await self.db.read(lambda conn: queue(conn, team=team, limit=limit))

    async def list(self, **filters: Any) -> list[Ticket]:
        return await self.db.read(lambda conn: list_tickets(conn, **filters))

    async def check_due(self) -> int:
        """One scheduler pass: escalate breached SLAs, wake snoozed tickets."""
        now = utcnow()
        done = 0
        for ticket_id, target in await self.db.read(due_breaches, now):
            change = await self.db.write(
                escalate,
                ticket_id,
                target,
                now,
                bump_priority=self.settings.sla_breach_bump_priority,
                reassign=self.settings.sla_breach_reassign,
            )
            if change is not None:
                log.warning("SLA %s breached on ticket %s", target, ticket_id)
                done += 1
                await self._publish(change)
        for ticket_id in await self.db.read(due_snoozes, now):
            await self._publish(await self.db.write(wake, ticket_id))
            done += 1
        return done

    # --- subscribers -----------------------------------------------------------------
    async def _on_handoff(self, event: HandoffRequested) -> None:
        await self.open(
            event.conversation_id,
            priority=event.priority,
            reason=event.reason,
            source=event.source,
            kb_hits=event.kb_hits,
        )

    async def _on_message(self, event: MessageReceived) -> None:
        policy = await self.policy()
        hits = routing.keyword_hits(policy.rules, event.body)
        # A ticket makes its conversation human-handled; a bot-handled one has
        # none, so the common case needs no database read.
        ticket = await self.db.read(open_ticket_of, event.conversation_id) if event.handler == "human" else None
        if ticket is not None and (ticket.sla_paused_at is not None or ticket.snoozed_until is not None):
            await self._publish(await self.db.write(customer_wrote, event.conversation_id, policy=policy))
        if hits and (ticket is not None or any(rule.handoff for rule in hits)):
            # A rule matched what the customer wrote (whether or not the bot saw
            # it): open a ticket, or raise the open one's priority.
            await self.open(
                event.conversation_id,
                priority=Priority.LOW,
                source="rule",
                reason="matched " + ", ".join(f"'{r.params['words'][0]}' rule" for r in hits),
            )

    async def _on_queued(self, event: MessageQueued) -> None:
        if event.author_kind == AuthorKind.AGENT.value:
            ticket = await self.db.write(record_first_response, event.conversation_id, event.at)
            if ticket is not None:
                await self.bus.publish(
                    TicketChanged(
                        ticket_id=ticket.id,
                        conversation_id=ticket.conversation_id,
                        changes={
                            "first_response_at": ticket.first_response_at.isoformat()
                            if ticket.first_response_at
                            else None
                        },
                    )
                )

    async def _on_conversation(self, event: ConversationUpdated) -> None:
        if not {"status", "priority", "assignee_id"} & set(event.changes):
            return
        policy = await self.policy()
        change = await self.db.write(sync_from_conversation, event.conversation_id, event.changes, policy=policy)
        if change is not None:
            change.conversation_changes = {}  # already published by whoever changed it
            if not change.ticket_changes:
                change.ticket_changes = {"conversation": dict(event.changes)}
            await self._publish(change, actor_id=event.actor_id)


async def tickets_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the ticket service, its subscriptions and the SLA scheduler."""
    service = TicketService(app[keys.DATABASE], app[keys.BUS], app[keys.SETTINGS])
    await service.db.write(agents_tx.recount_loads)
    service.subscribe()
    app[keys.EXTRAS][EXTRAS_KEY] = service
    service.scheduler.start()  # its first pass catches up on what fell due while down
    try:
        yield
    finally:
        await service.scheduler.stop()
        service.unsubscribe()
        app[keys.EXTRAS].pop(EXTRAS_KEY, None)
