"""What the console's conversation page shows, read in one transaction.

The contact's whole timeline across channels (messages in and out with their
channel and delivery state, internal notes, system and ticket events, the bot's
answers with the knowledge-base article they cited), the contact's profile as
the API shows it (identities, tags, attributes, opt-outs), the conversation's
ticket with its SLA clock, and the agents one may assign it to. Reads only:
every change goes through the services the REST API and the Slack desk use
(``hub.console.conversation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub import segments
from hub.console.inbox import SlaPolicy, sla_of
from hub.conversations import consent, timeline
from hub.conversations import contacts as contacts_tx
from hub.conversations import transactions as conversations_tx
from hub.models import AuthorKind, Contact, Conversation, Direction, Identity, Message, MessageKind
from hub.storage import rows
from hub.storage.schema import messages, tickets, users
from hub.tickets import agents as agents_tx
from hub.tickets.model import Ticket, TicketStatus, ticket_from_row

TIMELINE_PAGE = 50


@dataclass(frozen=True, slots=True)
class SlaClock:
    """A ticket's next deadline as the console shows it."""

    level: str  # none | ok | close | breached | paused
    due: datetime | None = None
    left: timedelta | None = None  # negative once breached

    @property
    def label(self) -> str:
        if self.level == "none":
            return "no SLA"
        if self.level == "paused":
            return "paused (waiting on the customer)"
        if self.left is None:
            return "breached"
        text = human_duration(abs(self.left))
        return f"breached {text} ago" if self.left < timedelta(0) else f"{text} left"


def human_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def sla_clock(ticket: Ticket | None, now: datetime, sla: SlaPolicy) -> SlaClock:
    """Red when breached, amber when close, for the ticket's next deadline:
    the inbox's reading (``hub.console.inbox.sla_of``: business hours, the
    warning share), so the page, the inbox, the board and Slack agree."""
    if ticket is None or ticket.status != TicketStatus.OPEN:
        return SlaClock("none")
    state = sla_of(ticket, now, sla)
    if state is None:
        return SlaClock("none")
    if state.paused and state.state != "breached":
        return SlaClock("paused", state.due)
    return SlaClock(state.state, state.due, state.left)


@dataclass(frozen=True, slots=True)
class Citation:
    """The knowledge-base article a bot answer quoted (its stored decision)."""

    title: str
    url: str | None
    action: str  # answer | fallback | clarify | ...
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the timeline, ready for the template."""

    message: Message
    author: str
    side: str  # customer | team | note | event
    citation: Citation | None = None
    suggested: list[str] = field(default_factory=list)  # titles a clarifying question offered
    segments: int | None = None  # an SMS the hub sent: what it cost
    text: str | None = None  # what to show instead of the body (an event naming a user by id)

    @property
    def id(self) -> int:
        return self.message.id

    @property
    def shown(self) -> str:
        return self.text if self.text is not None else self.message.body


@dataclass(frozen=True, slots=True)
class TimelinePage:
    entries: list[Entry]
    prev_cursor: str | None  # older entries exist: "before" this
    next_cursor: str | None  # the newest entry shown: poll "after" this


@dataclass(frozen=True, slots=True)
class Assignable:
    id: int
    name: str
    on_duty: bool
    open_tickets: int
    capacity: int


@dataclass(frozen=True, slots=True)
class ConversationView:
    conversation: Conversation
    contact: Contact
    identities: list[Identity]
    opt_outs: list[dict[str, Any]]
    ticket: Ticket | None  # the open ticket, else the latest one
    sla: SlaClock
    timeline: TimelinePage
    agents: list[Assignable]
    assignee: str | None
    conversations: list[Conversation]  # the contact's, newest first


def citation(message: Message) -> tuple[Citation | None, list[str]]:
    """What a bot reply's stored ``kb_hits``/``decision`` say it cited."""
    if message.author_kind != AuthorKind.BOT:
        return None, []
    hits = [h for h in message.meta.get("kb_hits") or [] if isinstance(h, dict)]
    decision = message.meta.get("decision") if isinstance(message.meta.get("decision"), dict) else {}
    assert isinstance(decision, dict)
    action = str(decision.get("action") or ("fallback" if message.meta.get("fallback") else ""))
    confidence = decision.get("confidence", message.meta.get("confidence"))
    confidence = float(confidence) if isinstance(confidence, int | float) else None
    cited: dict[str, Any] | None = None
    article_id = decision.get("article_id")
    if article_id is not None:
        cited = next((h for h in hits if h.get("article_id") == article_id), None)
        if cited is None:
            cited = {"title": str(article_id)}
    elif action in ("answer", "fallback") and hits:
        cited = hits[0]
    suggested: list[str] = []
    if action == "clarify":
        wanted = decision.get("article_ids") or []
        suggested = [str(h.get("title") or h.get("article_id")) for h in hits if h.get("article_id") in wanted]
    if cited is None:
        return None, suggested
    url = cited.get("url")
    return (
        Citation(
            title=str(cited.get("title") or cited.get("article_id") or "article"),
            url=str(url) if isinstance(url, str) and url.startswith(("/", "http://", "https://")) else None,
            action=action or "answer",
            confidence=confidence,
        ),
        suggested,
    )


def _side(message: Message) -> str:
    if message.kind == MessageKind.NOTE:
        return "note"
    if message.kind == MessageKind.EVENT:
        return "event"
    return "customer" if message.direction == Direction.INBOUND else "team"


def _assignee_event(message: Message) -> bool:
    """ "Assignee changed to 7": the timeline says who instead."""
    return message.kind == MessageKind.EVENT and message.meta.get("event") == "assignee-changed"


def entries(conn: Connection, found: list[Message], contact: Contact, *, sms_channels: frozenset[str]) -> list[Entry]:
    """Timeline messages with their authors' names (one query for them all)."""
    ids = {m.author_id for m in found if m.author_id is not None}
    ids |= {m.meta["assignee"] for m in found if _assignee_event(m) and isinstance(m.meta.get("assignee"), int)}
    names: dict[int, str] = {}
    if ids:
        names = {
            row.id: row.name for row in conn.execute(sa.select(users.c.id, users.c.name).where(users.c.id.in_(ids)))
        }
    made = []
    for message in found:
        if message.author_kind == AuthorKind.CUSTOMER:
            author = contact.name or "Customer"
        elif message.author_kind == AuthorKind.AGENT:
            author = names.get(message.author_id or 0, "Agent")
        elif message.author_kind == AuthorKind.BOT:
            author = "Bot"
        else:
            author = names.get(message.author_id or 0, "Hub") if message.kind == MessageKind.EVENT else "Hub"
        cited, suggested = citation(message)
        cost = None
        if message.direction == Direction.OUTBOUND and message.channel in sms_channels:
            cost = segments.segment_count(message.body)
        text = None
        if _assignee_event(message):
            assignee = message.meta.get("assignee")
            text = f"Assigned to {names.get(assignee, f'user {assignee}')}" if assignee is not None else "Unassigned"
        made.append(
            Entry(
                message=message,
                author=author,
                side=_side(message),
                citation=cited,
                suggested=suggested,
                segments=cost,
                text=text,
            )
        )
    return made


def timeline_page(
    conn: Connection,
    contact: Contact,
    *,
    before: str | None = None,
    after: str | None = None,
    limit: int = TIMELINE_PAGE,
    sms_channels: frozenset[str] = frozenset(),
) -> TimelinePage:
    page = timeline.page(conn, contact_id=contact.id, before=before, after=after, limit=limit)
    return TimelinePage(
        entries=entries(conn, page.items, contact, sms_channels=sms_channels),
        prev_cursor=page.prev_cursor if not after else None,
        next_cursor=page.next_cursor,
    )


def entries_by_id(
    conn: Connection, contact: Contact, ids: list[int], *, sms_channels: frozenset[str] = frozenset()
) -> TimelinePage:
    """Entries already on the page, as they are now (a delivery state moved on)."""
    found = [
        rows.message(r)
        for r in conn.execute(
            sa.select(messages)
            .where(messages.c.contact_id == contact.id, messages.c.id.in_(ids))
            .order_by(messages.c.id)
        )
    ]
    return TimelinePage(
        entries=entries(conn, found, contact, sms_channels=sms_channels), prev_cursor=None, next_cursor=None
    )


def ticket_of(conn: Connection, conversation_id: int) -> Ticket | None:
    """The conversation's open ticket, else its latest."""
    row = conn.execute(
        sa.select(tickets)
        .where(tickets.c.conversation_id == conversation_id)
        .order_by((tickets.c.status == TicketStatus.OPEN.value).desc(), tickets.c.id.desc())
        .limit(1)
    ).first()
    return ticket_from_row(row) if row is not None else None


def load(
    conn: Connection,
    conversation_id: int,
    *,
    now: datetime,
    sla: SlaPolicy,
    default_team: str,
    default_capacity: int,
    before: str | None = None,
    sms_channels: frozenset[str] = frozenset(),
) -> ConversationView:
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    contact = contacts_tx.get_contact(conn, conversation.contact_id)
    ticket = ticket_of(conn, conversation_id)
    agents = agents_tx.list_agents(conn, default_team=default_team, default_capacity=default_capacity)
    assignable = [Assignable(a.id, a.user.name, a.on_duty, a.open_tickets, a.capacity) for a in agents]
    assignee_id = conversation.assignee_id
    assignee = next((a.name for a in assignable if a.id == assignee_id), None)
    if assignee_id is not None and assignee is None:
        assignee = f"user {assignee_id}"
    return ConversationView(
        conversation=conversation,
        contact=contact,
        identities=contacts_tx.identities_of(conn, contact.id),
        opt_outs=consent.of_contact(conn, contact.id),
        ticket=ticket,
        sla=sla_clock(ticket, now, sla),
        timeline=timeline_page(conn, contact, before=before, sms_channels=sms_channels),
        agents=assignable,
        assignee=assignee,
        conversations=conversations_tx.list_conversations(conn, contact_id=contact.id, limit=20),
    )
