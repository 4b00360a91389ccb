"""Domain events: dataclasses with a kebab-case ``name`` and a UTC timestamp."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Where a service reads the time it hands to its transactions (STYLE
    habit 15): the real UTC clock here; tests pass one they move."""

    def now(self) -> datetime:
        return utcnow()


@dataclass(frozen=True, kw_only=True)
class Event:
    name: ClassVar[str] = "event"
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class MessageReceived(Event):
    """An inbound customer message was stored (never published for duplicates)."""

    name: ClassVar[str] = "message-received"
    message_id: int
    conversation_id: int
    contact_id: int
    channel: str
    body: str
    new_conversation: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    # Who had the conversation when the message arrived: "bot" or "human".
    handler: str = "bot"
    # False for what no bot answers: a keyword (SMS STOP) or machine-written mail.
    answerable: bool = True


@dataclass(frozen=True, kw_only=True)
class MessageQueued(Event):
    """An outbound message was stored and queued in the outbox."""

    name: ClassVar[str] = "message-queued"
    message_id: int
    conversation_id: int
    contact_id: int
    channel: str
    author_kind: str


@dataclass(frozen=True, kw_only=True)
class MessageDelivered(Event):
    name: ClassVar[str] = "message-delivered"
    message_id: int
    channel: str
    provider_id: str | None


@dataclass(frozen=True, kw_only=True)
class DeliveryFailed(Event):
    name: ClassVar[str] = "delivery-failed"
    message_id: int
    channel: str
    error: str
    dead: bool


@dataclass(frozen=True, kw_only=True)
class DeliveryUpdated(Event):
    """A provider reported on a sent message (delivered, undelivered...)."""

    name: ClassVar[str] = "delivery-updated"
    message_id: int
    conversation_id: int
    status: str
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class SystemEventAdded(Event):
    """The hub wrote a system line on a timeline that agents must see where
    they work (a message that could not be delivered, an opt-out): the Slack
    desk mirrors it into the ticket's thread, in the same transaction."""

    name: ClassVar[str] = "system-event-added"
    message_id: int
    conversation_id: int
    event: str
    # The ticket whose thread gets it even when no longer open (a CSAT
    # answer after the resolve); None: the conversation's open ticket.
    ticket_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class NoteAdded(Event):
    name: ClassVar[str] = "note-added"
    message_id: int
    conversation_id: int
    author_id: int | None


@dataclass(frozen=True, kw_only=True)
class ConversationUpdated(Event):
    """Status, priority, assignee or handler changed."""

    name: ClassVar[str] = "conversation-updated"
    conversation_id: int
    changes: dict[str, Any]
    actor_id: int | None = None
    # "tickets" when a ticket transition made the change (the ticket is
    # already in step: the tickets' own hook skips it).
    origin: str = ""


@dataclass(frozen=True, kw_only=True)
class AgentTyping(Event):
    """An agent types a reply in the console (or stopped): every hub instance
    shows it on the customer's open chat sockets it holds (``HubService``).
    Nothing is stored; a lost one costs an indicator, never work."""

    name: ClassVar[str] = "agent-typing"
    conversation_id: int
    channel: str
    to: str  # the customer's address on the channel (a chat visitor id)
    active: bool


@dataclass(frozen=True, kw_only=True)
class ContactsMerged(Event):
    name: ClassVar[str] = "contacts-merged"
    source_id: int
    target_id: int


@dataclass(frozen=True, kw_only=True)
class ContactErased(Event):
    name: ClassVar[str] = "contact-erased"
    contact_id: int


# --- tickets (hub.tickets) ------------------------------------------------------


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


@dataclass(frozen=True, kw_only=True)
class SlaWarning(Event):
    """``HUB_SLA_WARN_AT`` of an SLA window has elapsed: recorded once per
    ticket, target and deadline (``sla_warnings``)."""

    name: ClassVar[str] = "sla-warning"
    ticket_id: int
    conversation_id: int
    target: str  # first_response | resolution
    due_at: datetime
    team: str
    priority: str
    assignee_id: int | None


def _registry() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    stack = list(Event.__subclasses__())
    while stack:
        cls = stack.pop()
        found[cls.name] = cls
        stack.extend(cls.__subclasses__())
    return found


def to_json(event: Event) -> dict[str, Any]:
    from dataclasses import asdict

    data = {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(event).items()}
    return {"name": event.name, "data": data}


def from_json(payload: dict[str, Any]) -> Event:
    cls = _registry().get(payload.get("name", ""))
    if cls is None:
        raise ValueError(f"unknown event {payload.get('name')!r}")
    data = dict(payload["data"])
    for spec in fields(cls):  # datetimes travel as ISO text (``to_json``)
        if spec.type in ("datetime", "datetime | None") and isinstance(data.get(spec.name), str):
            data[spec.name] = datetime.fromisoformat(data[spec.name])
    return cls(**data)
