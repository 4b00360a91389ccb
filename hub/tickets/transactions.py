"""Tickets: a handed-off conversation, its routing and its SLA clock.

State machine (one open ticket per conversation at most)::

    (handoff) --> open/queued --(assign, claim)--> open/assigned --(resolve)--> resolved
                     ^                                 |
                     +----(unassign, agent off duty)----+

An agent's load counts their open tickets that are not snoozed. Every change
that frees or adds capacity (resolve, snooze, reassign, unassign, a capacity
or duty change) fills it from the queue in the same transaction
(``fill_capacity``: most urgent first, then oldest); an automatic booking is a
conditional update (``agents.take_slot``), so concurrent routing never takes
an agent past capacity.

Lock order on PostgreSQL (SQLite has one writer): a change takes its
conversation's row, then the routing lock (``agents.lock_routing``), then the
rows it writes; the fill pass takes each queued ticket and its conversation
with ``SKIP LOCKED``, so it never waits on a row someone else holds. Routing
is then serial across connections and instances: a resolve and a handoff
committing at once cannot each miss the other's row, and a ticket resolved
twice at once frees its agent's slot once.

(Longer than the house's ~400 lines: the transitions call one another, a
resolve fills the queue and the fill routes, through the same booking and
locking helpers, so they stay in one module.)

The conversation stays the source of truth for priority, assignee and status
(``hub.models``); the ticket keeps copies of priority and assignee so the
queue, the load counts and the SLA scan read one table, and every change is
made to both in ONE transaction here (``conversations.update_conversation``
records the timeline events). ``TicketService`` publishes the events after
the commit. Changes made elsewhere (``PATCH /conversations/{id}``) reach the
ticket through ``ConversationUpdated`` (``sync_from_conversation``), which is
a no-op for the changes this module made itself.

Every transaction takes ``now`` from its caller (``TicketService`` reads its
clock). The module runs a little past ~400 lines because the transitions
share private helpers (``_update``, ``_set_assignee``, ``_set_priority``,
``_pause``/``_resume``) that keep the ticket and its conversation in step and
should not be reachable from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub import auth
from hub.conversations import contacts as contacts_tx
from hub.conversations import transactions as conversations_tx
from hub.errors import Conflict, InvalidInput
from hub.models import ConversationStatus, Handler, Priority
from hub.storage import insert_ignore
from hub.storage.schema import conversations, sla_warnings, tickets
from hub.tickets import agents as agents_tx
from hub.tickets import routing, sla
from hub.tickets.model import Ticket, TicketStatus
from hub.tickets.queries import customer_text, get_ticket, next_queued, open_ticket_of, recent_conversations


@dataclass(frozen=True, slots=True)
class Policy:
    """What a transaction needs from settings and the rule cache."""

    rules: tuple[routing.Rule, ...]
    slas: dict[Priority, sla.Policy]
    default_team: str
    hours: sla.BusinessHours | None = None
    warn_at: float = 0.0  # HUB_SLA_WARN_AT; 0: no warnings

    def deadlines(
        self, priority: Priority | str, created_at: datetime, paused: float
    ) -> tuple[datetime | None, datetime | None]:
        return sla.deadlines(self.slas, priority, created_at, paused, self.hours)

    def sla_values(self, priority: Priority | str, created_at: datetime, paused: float) -> dict[str, Any]:
        """The ticket's deadline columns and their warning moments, moved together."""
        first_due, resolution_due = self.deadlines(priority, created_at, paused)
        first_warn, resolution_warn = sla.warning_moments(
            self.slas, priority, created_at, paused, self.hours, self.warn_at
        )
        return {
            "first_response_due": first_due,
            "resolution_due": resolution_due,
            "first_response_warn_at": first_warn,
            "resolution_warn_at": resolution_warn,
        }


@dataclass(slots=True)
class Change:
    """A transaction's outcome: the ticket and what to publish after commit."""

    ticket: Ticket
    now: datetime  # the transaction's time, from the caller's clock
    created: bool = False
    conversation_changes: dict[str, Any] = field(default_factory=dict)
    ticket_changes: dict[str, Any] = field(default_factory=dict)
    breached: str | None = None
    warned: str | None = None  # the SLA target warned about (``warn``)
    follow: list[Change] = field(default_factory=list)  # queued tickets routed by this change
    # Set in the transaction by ``TicketService``: the events to publish after
    # the commit, and the in-transaction hooks' follow-ups.
    events: list[Any] = field(default_factory=list)
    afters: list[Any] = field(default_factory=list)


def _update(conn: Connection, ticket_id: int, now: datetime, **values: Any) -> Ticket:
    values.setdefault("updated_at", now)
    conn.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(**values))
    return get_ticket(conn, ticket_id)


def _conversation(
    conn: Connection, change: Change, conversation_id: int, changes: dict[str, Any], actor_id: int | None
) -> None:
    _, applied = conversations_tx.update_conversation(conn, conversation_id, changes, actor_id=actor_id)
    change.conversation_changes.update(applied)


def _hold(conn: Connection, conversation_id: int) -> None:
    """Take the locks of a routing change in their order: the conversation's
    row, then the routing lock (PostgreSQL; no-ops on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_CONVERSATION, {"conversation_id": conversation_id})
    agents_tx.lock_routing(conn)


_LOCK_CONVERSATION = (
    sa.select(conversations.c.id).where(conversations.c.id == sa.bindparam("conversation_id")).with_for_update()
)


def _held(conn: Connection, ticket_id: int) -> Ticket:
    """The ticket, read after its change's locks are held (so a concurrent
    change of it has committed and is seen)."""
    ticket = get_ticket(conn, ticket_id)
    if conn.dialect.name != "postgresql":
        return ticket  # one writer: nothing to wait for
    _hold(conn, ticket.conversation_id)
    return get_ticket(conn, ticket_id)


def _counts(ticket: Ticket) -> bool:
    """Does the ticket count toward its assignee's load? (open and awake)"""
    return ticket.status == TicketStatus.OPEN and ticket.snoozed_until is None


def _choose_and_book(conn: Connection, ticket: Ticket, exclude: tuple[int, ...]) -> int | None:
    """The agent routing picks who still has room, booked; None when nobody has."""
    agents_tx.lock_routing(conn)  # decide on what every earlier routing committed
    while True:
        agent = routing.choose(
            agents_tx.candidate_loads(conn, team=ticket.team, urgent=ticket.priority == Priority.URGENT),
            team=ticket.team,
            priority=ticket.priority,
            exclude=exclude,
        )
        if agent is None:
            return None
        if not _counts(ticket) or agents_tx.take_slot(conn, agent.user_id):
            return agent.user_id
        exclude = (*exclude, agent.user_id)  # filled up by a concurrent booking: next best


def _auto_assign(
    conn: Connection, change: Change, *, exclude: tuple[int, ...] = (), actor_id: int | None = None
) -> None:
    agent_id = _choose_and_book(conn, change.ticket, exclude)
    if agent_id is not None:
        _set_assignee(conn, change, agent_id, actor_id=actor_id, booked=True)


def _set_assignee(
    conn: Connection, change: Change, assignee_id: int | None, *, actor_id: int | None, booked: bool = False
) -> None:
    ticket = change.ticket
    if ticket.assignee_id == assignee_id:
        return
    if _counts(ticket):
        agents_tx.book(conn, ticket.assignee_id, -1)
        if not booked:
            agents_tx.book(conn, assignee_id, +1, stamp=True, team=ticket.team)
    change.ticket = _update(conn, ticket.id, change.now, assignee_id=assignee_id)
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
    now: datetime,
) -> Change:
    """Open (or, when one is open, escalate) the conversation's ticket, route it."""
    _hold(conn, conversation_id)
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    contact = contacts_tx.get_contact(conn, conversation.contact_id)
    texts = customer_text(conn, conversation_id)
    urgency = routing.evaluate(
        policy.rules,
        # A handoff may raise the conversation's priority, never lower it.
        base=routing.higher(Priority(priority), conversation.priority),
        text="\n".join(texts),
        attributes=contact.attributes,
        recent_conversations=recent_conversations(conn, contact.id, policy.rules, now),
    )
    existing = open_ticket_of(conn, conversation_id)
    if existing is not None:
        change = Change(ticket=existing, now=now)
        wanted = routing.higher(existing.priority, urgency.priority)
        if wanted != existing.priority:
            _set_priority(conn, change, wanted, policy, actor_id=actor_id)
        return change
    summary = (conversation.subject or (texts[-1] if texts else reason) or "")[:300]
    reasons = "; ".join(filter(None, [reason, *urgency.reasons]))
    team_name = team or urgency.team or policy.default_team
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
            **policy.sla_values(urgency.priority, now, 0.0),
            sla_paused_seconds=0.0,
            escalations=0,
        )
        .on_conflict_do_nothing()
        .returning(tickets.c.id)
    ).scalar_one_or_none()
    if new_id is None:  # a concurrent handoff of the same conversation won
        # The winner's row is committed before the conflict is reported, so it
        # is found; this handoff may still be the more urgent one.
        winner = open_ticket_of(conn, conversation_id)
        assert winner is not None, "the conflicting ticket is committed before the conflict is reported"
        change = Change(ticket=winner, now=now)
        if routing.higher(winner.priority, urgency.priority) != winner.priority:
            _set_priority(conn, change, urgency.priority, policy, actor_id=actor_id)
        return change
    change = Change(ticket=get_ticket(conn, new_id), now=now, created=True)
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
        values.update(policy.sla_values(priority, ticket.created_at, paused))
    change.ticket = _update(conn, ticket.id, change.now, **values)
    change.ticket_changes["priority"] = priority.value
    _conversation(conn, change, ticket.conversation_id, {"priority": priority.value}, actor_id)


def _open(conn: Connection, ticket_id: int) -> Ticket:
    ticket = _held(conn, ticket_id)
    if ticket.status != TicketStatus.OPEN:
        raise Conflict(f"ticket {ticket_id} is already resolved")
    return ticket


def assign(
    conn: Connection,
    ticket_id: int,
    assignee_id: int | None,
    *,
    actor_id: int | None,
    now: datetime,
    only_if_unassigned: bool = False,
) -> Change:
    ticket = _open(conn, ticket_id)
    if assignee_id is not None:
        auth.check_assignee(conn, assignee_id)
    if only_if_unassigned and ticket.assignee_id not in (None, assignee_id):
        raise Conflict(f"ticket {ticket_id} is already assigned to user {ticket.assignee_id}")
    change = Change(ticket=ticket, now=now)
    freed = ticket.assignee_id is not None and ticket.assignee_id != assignee_id
    _set_assignee(conn, change, assignee_id, actor_id=actor_id)
    if freed:
        # Unassigned, it joins the queue; the previous agent's room goes to
        # the queue's head, which is not the ticket they just let go.
        change.follow = fill_capacity(conn, now=now, skip=(ticket_id,))
    return change


def set_priority(
    conn: Connection, ticket_id: int, priority: Priority | str, *, policy: Policy, actor_id: int | None, now: datetime
) -> Change:
    try:
        level = Priority(priority)
    except ValueError:
        raise InvalidInput("priority must be one of urgent, high, normal, low") from None
    change = Change(ticket=_open(conn, ticket_id), now=now)
    _set_priority(conn, change, level, policy, actor_id=actor_id)
    return change


def resolve(
    conn: Connection, ticket_id: int, *, actor_id: int | None, now: datetime, touch_conversation: bool = True
) -> Change:
    ticket = _held(conn, ticket_id)
    change = Change(ticket=ticket, now=now)
    if ticket.status == TicketStatus.RESOLVED:
        return change
    if _counts(ticket):
        agents_tx.book(conn, ticket.assignee_id, -1)
    change.ticket = _update(
        conn,
        ticket_id,
        change.now,
        status=TicketStatus.RESOLVED.value,
        open_conversation_id=None,
        resolved_at=now,
        snoozed_until=None,
        updated_at=now,
    )
    change.ticket_changes["status"] = TicketStatus.RESOLVED.value
    if touch_conversation:
        _conversation(conn, change, ticket.conversation_id, {"status": ConversationStatus.RESOLVED.value}, actor_id)
    if ticket.assignee_id is not None:
        change.follow = fill_capacity(conn, now=now)
    return change


def snooze(conn: Connection, ticket_id: int, until: datetime, *, actor_id: int | None, now: datetime) -> Change:
    """Snoozed, a ticket leaves its agent's load until it wakes: their room
    goes to the queue at once."""
    ticket = _open(conn, ticket_id)
    change = Change(ticket=ticket, now=now)
    if _counts(ticket):
        agents_tx.book(conn, ticket.assignee_id, -1)
    change.ticket = _update(conn, ticket_id, change.now, snoozed_until=until)
    change.ticket_changes["snoozed_until"] = until.isoformat()
    _conversation(conn, change, change.ticket.conversation_id, {"status": ConversationStatus.SNOOZED.value}, actor_id)
    if ticket.assignee_id is not None and ticket.snoozed_until is None:
        change.follow = fill_capacity(conn, now=now)
    return change


def _unsnooze(conn: Connection, change: Change) -> None:
    """Awake again: back in its agent's load (or, unassigned, routed now)."""
    if change.ticket.snoozed_until is None:
        return
    change.ticket = _update(conn, change.ticket.id, change.now, snoozed_until=None)
    change.ticket_changes["snoozed_until"] = None
    if change.ticket.assignee_id is not None:
        agents_tx.book(conn, change.ticket.assignee_id, +1)
    else:
        _auto_assign(conn, change)


def _pause(conn: Connection, change: Change, now: datetime) -> None:
    if change.ticket.sla_paused_at is None:
        change.ticket = _update(conn, change.ticket.id, change.now, sla_paused_at=now)
        change.ticket_changes["sla_paused"] = True


def _resume(conn: Connection, change: Change, policy: Policy, now: datetime) -> None:
    ticket = change.ticket
    if ticket.sla_paused_at is None:
        return
    paused = conn.execute(sa.select(tickets.c.sla_paused_seconds).where(tickets.c.id == ticket.id)).scalar_one()
    paused += sla.paused_for(ticket.sla_paused_at, now, policy.hours)
    change.ticket = _update(
        conn,
        ticket.id,
        change.now,
        sla_paused_at=None,
        sla_paused_seconds=paused,
        **policy.sla_values(ticket.priority, ticket.created_at, paused),
    )
    change.ticket_changes["sla_paused"] = False


def sync_from_conversation(
    conn: Connection, conversation_id: int, changes: dict[str, Any], *, policy: Policy, now: datetime
) -> Change | None:
    """Bring the open ticket in line with a conversation change made anywhere."""
    _hold(conn, conversation_id)
    ticket = open_ticket_of(conn, conversation_id)
    if ticket is None:
        return None
    change = Change(ticket=ticket, now=now)
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    freed = False
    if "assignee_id" in changes and conversation.assignee_id != ticket.assignee_id:
        if _counts(ticket):
            agents_tx.book(conn, ticket.assignee_id, -1)
            agents_tx.book(conn, conversation.assignee_id, +1, stamp=True, team=ticket.team)
        freed = ticket.assignee_id is not None
        change.ticket = _update(conn, ticket.id, change.now, assignee_id=conversation.assignee_id)
        change.ticket_changes["assignee_id"] = conversation.assignee_id
    if "priority" in changes and conversation.priority != change.ticket.priority:
        paused = conn.execute(sa.select(tickets.c.sla_paused_seconds).where(tickets.c.id == ticket.id)).scalar_one()
        change.ticket = _update(
            conn,
            ticket.id,
            now,
            priority=conversation.priority.value,
            **policy.sla_values(conversation.priority, ticket.created_at, paused),
        )
        change.ticket_changes["priority"] = conversation.priority.value
    if "status" in changes:
        if conversation.status == ConversationStatus.RESOLVED:
            resolved = resolve(conn, change.ticket.id, actor_id=None, now=now, touch_conversation=False)
            change.ticket, change.ticket_changes["status"] = resolved.ticket, TicketStatus.RESOLVED.value
            change.follow, freed = resolved.follow, False
        elif conversation.status == ConversationStatus.PENDING:
            _pause(conn, change, now)
        else:
            _resume(conn, change, policy, now)
            if conversation.status == ConversationStatus.OPEN:
                _unsnooze(conn, change)
    if freed:
        change.follow = fill_capacity(conn, now=now, skip=(ticket.id,))
    return change if change.ticket_changes or changes.get("status") else None


def customer_wrote(conn: Connection, conversation_id: int, *, policy: Policy, now: datetime) -> Change | None:
    """Ingest reopens a pending/snoozed conversation without an event: resume the clock."""
    _hold(conn, conversation_id)
    ticket = open_ticket_of(conn, conversation_id)
    if ticket is None:
        return None
    change = Change(ticket=ticket, now=now)
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    if conversation.status == ConversationStatus.OPEN:
        _resume(conn, change, policy, now)
        _unsnooze(conn, change)
    return change


def record_first_response(conn: Connection, conversation_id: int, at: datetime) -> Ticket | None:
    done = conn.execute(
        sa.update(tickets)
        .where(tickets.c.open_conversation_id == conversation_id, tickets.c.first_response_at.is_(None))
        .values(first_response_at=at, updated_at=at)
    )
    return open_ticket_of(conn, conversation_id) if done.rowcount else None


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
    _held(conn, ticket_id)
    claimed = conn.execute(
        sa.update(tickets)
        .where(*still_due)
        .values({column.name: now, "escalations": tickets.c.escalations + 1, "updated_at": now})
    )
    if claimed.rowcount == 0:
        return None
    ticket = get_ticket(conn, ticket_id)
    change = Change(ticket=ticket, breached=target, now=now)
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
        if change.ticket.assignee_id != previous:
            change.follow = fill_capacity(conn, now=now, skip=(ticket_id,))
    elif change.ticket.assignee_id is None:
        _auto_assign(conn, change)
    return change


def warn(conn: Connection, ticket_id: int, target: str, now: datetime) -> Change | None:
    """Record the warning of ``target``'s current deadline once: the row in
    ``sla_warnings`` (unique per ticket, target and deadline) is the claim,
    so of two schedulers (two instances) one warns. Nothing when the moment
    has not come, the SLA is paused, the target is met or breached, or the
    ticket is resolved."""
    due = tickets.c.first_response_due if target == "first_response" else tickets.c.resolution_due
    warn_at = tickets.c.first_response_warn_at if target == "first_response" else tickets.c.resolution_warn_at
    breached = tickets.c.first_response_breached_at if target == "first_response" else tickets.c.resolution_breached_at
    held = conn.execute(sa.select(tickets.c.conversation_id).where(tickets.c.id == ticket_id)).first()
    if held is None:
        return None  # erased since the scan
    if conn.dialect.name == "postgresql":
        _hold(conn, held.conversation_id)  # a resolve or a reply committing now is seen
    still = [
        tickets.c.id == ticket_id,
        tickets.c.status == TicketStatus.OPEN.value,
        tickets.c.sla_paused_at.is_(None),
        breached.is_(None),
        warn_at <= now,
        due > now,  # past it, it is a breach (``escalate``), not a warning
    ]
    if target == "first_response":
        still.append(tickets.c.first_response_at.is_(None))
    row = conn.execute(sa.select(due.label("due"), tickets.c.assignee_id).where(*still)).first()
    if row is None:
        return None
    claimed = conn.execute(
        insert_ignore(conn, sla_warnings)
        .values(ticket_id=ticket_id, target=target, due_at=row.due, warned_at=now, assignee_id=row.assignee_id)
        .on_conflict_do_nothing()
    )
    if claimed.rowcount != 1:
        return None  # warned already (this deadline, another instance)
    return Change(ticket=get_ticket(conn, ticket_id), now=now, warned=target)


def backfill_warning_moments(conn: Connection, policy: Policy) -> int:
    """Give open tickets without warning moments theirs (tickets opened
    before migration 0012, or while HUB_SLA_WARN_AT was 0), at start-up."""
    if not 0.0 < policy.warn_at < 1.0:
        return 0
    found = conn.execute(
        sa.select(tickets.c.id, tickets.c.priority, tickets.c.created_at, tickets.c.sla_paused_seconds).where(
            tickets.c.status == TicketStatus.OPEN.value,
            tickets.c.first_response_warn_at.is_(None),
            tickets.c.resolution_warn_at.is_(None),
            sa.or_(tickets.c.first_response_due.is_not(None), tickets.c.resolution_due.is_not(None)),
        )
    ).all()
    for row in found:
        values = policy.sla_values(row.priority, row.created_at, row.sla_paused_seconds)
        conn.execute(
            sa.update(tickets)
            .where(tickets.c.id == row.id)
            .values(
                first_response_warn_at=values["first_response_warn_at"],
                resolution_warn_at=values["resolution_warn_at"],
            )
        )
    return len(found)


def wake(conn: Connection, ticket_id: int, now: datetime) -> Change | None:
    """Wake a snoozed ticket whose time has come. Read after the ticket's
    locks are held, so of two passes (two instances) the second finds it
    awake and does nothing, and a ticket snoozed again since the scan sleeps on."""
    ticket = _held(conn, ticket_id)
    if ticket.status != TicketStatus.OPEN or ticket.snoozed_until is None or ticket.snoozed_until > now:
        return None
    change = Change(ticket=ticket, now=now)
    _unsnooze(conn, change)
    conversation = conversations_tx.get_conversation(conn, ticket.conversation_id)
    if conversation.status == ConversationStatus.SNOOZED:
        _conversation(conn, change, ticket.conversation_id, {"status": ConversationStatus.OPEN.value}, None)
    return change


def reroute(conn: Connection, ticket_id: int, *, exclude: tuple[int, ...], now: datetime) -> Change | None:
    """Give an open ticket to someone else (or back to the queue)."""
    ticket = _held(conn, ticket_id)
    if ticket.status != TicketStatus.OPEN:
        return None
    change = Change(ticket=ticket, now=now)
    agent_id = _choose_and_book(conn, ticket, exclude)
    _set_assignee(conn, change, agent_id, actor_id=None, booked=agent_id is not None)
    return change


def set_team(conn: Connection, ticket_id: int, team: str, *, actor_id: int | None, now: datetime) -> Change:
    """Move an open ticket to ``team``: its assignee keeps it only when in that
    team; otherwise it is routed within the new team (or queued there)."""
    team = team.strip()
    if not team or len(team) > 64:
        raise InvalidInput("team must be a name of at most 64 characters")
    ticket = _open(conn, ticket_id)
    change = Change(ticket=ticket, now=now)
    if ticket.team == team:
        return change
    change.ticket = _update(conn, ticket.id, now, team=team)
    change.ticket_changes["team"] = team
    if ticket.assignee_id is None or not agents_tx.serves(conn, ticket.assignee_id, team):
        if ticket.assignee_id is not None:
            _set_assignee(conn, change, None, actor_id=actor_id)
        _auto_assign(conn, change, actor_id=actor_id)
    return change


def queue_beside_room(conn: Connection) -> bool:
    """Does an awake queued ticket wait while an on-duty agent has room? (a
    read, so the scheduler's safety net writes only when a fill may route)"""
    waiting = conn.execute(
        sa.select(tickets.c.id)
        .where(
            tickets.c.status == TicketStatus.OPEN.value,
            tickets.c.assignee_id.is_(None),
            tickets.c.snoozed_until.is_(None),
        )
        .limit(1)
    ).first()
    return waiting is not None and agents_tx.anyone_with_room(conn)


def fill_capacity(conn: Connection, *, now: datetime, skip: tuple[int, ...] = (), limit: int = 50) -> list[Change]:
    """Route queued tickets (most urgent first, then oldest) to on-duty agents
    with room, in the caller's transaction: called by every change that frees
    or adds capacity. Holds the routing lock; takes one queued ticket at a
    time, passing over any whose rows another transaction holds (PostgreSQL),
    and each booking re-checks capacity (``take_slot``)."""
    agents_tx.lock_routing(conn)
    done: list[Change] = []
    passed = set(skip)
    for _ in range(limit):
        if not agents_tx.anyone_with_room(conn):
            break
        ticket = next_queued(conn, passed=passed)
        if ticket is None:
            break
        passed.add(ticket.id)
        change = Change(ticket=ticket, now=now)
        _auto_assign(conn, change)
        if change.ticket.assignee_id is not None:
            done.append(change)
    return done
