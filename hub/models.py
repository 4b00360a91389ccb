"""The domain: Contact, Identity, Conversation, Message, User.

Tickets are conversations: like Chatwoot (and unlike Zendesk's separate
ticket object), a conversation carries the ticket-facing fields (status,
priority, assignee, subject) because every customer thread needs them and a
second table would only mirror them. Handoffs and SLA deadlines, which only
some conversations have, get their own table with the ticket issue.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


class StrEnum(enum.StrEnum):
    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class ConversationStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"  # waiting on the customer
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """The one ordering of priorities: 0 for urgent ... 3 for low (smaller is more urgent)."""
        return _PRIORITY_RANK[self]

    def more_urgent_than(self, other: Priority | str) -> bool:
        return self.rank < Priority(other).rank


_PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


class Handler(StrEnum):
    """Who answers the conversation right now."""

    BOT = "bot"
    HUMAN = "human"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"  # notes and system events: never sent to the customer


class AuthorKind(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class MessageKind(StrEnum):
    MESSAGE = "message"
    NOTE = "note"  # internal note by an agent
    EVENT = "event"  # system event: assigned, escalated, resolved, merged...


class DeliveryStatus(StrEnum):
    RECEIVED = "received"  # inbound
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # the provider could not reach the handset (Twilio 30003...)
    FAILED = "failed"  # dead-lettered after the last attempt, or refused by the provider
    NONE = "none"  # notes and events


class Role(StrEnum):
    VIEWER = "viewer"
    AGENT = "agent"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "agent": 1, "admin": 2}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]  # a mixin: every subclass is a dataclass, which mypy cannot see here
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
            elif isinstance(value, enum.Enum):
                data[key] = value.value
        return data


@dataclass(frozen=True, slots=True)
class Identity(_Serialisable):
    id: int
    contact_id: int
    channel: str
    address: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Contact(_Serialisable):
    id: int
    name: str | None
    email: str | None
    phone: str | None
    attributes: dict[str, Any]
    tags: list[str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Conversation(_Serialisable):
    id: int
    contact_id: int
    channel: str
    identity_id: int | None
    thread_key: str | None
    status: ConversationStatus
    priority: Priority
    handler: Handler
    assignee_id: int | None
    subject: str | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class Message(_Serialisable):
    id: int
    conversation_id: int
    contact_id: int
    channel: str
    direction: Direction
    kind: MessageKind
    author_kind: AuthorKind
    author_id: int | None
    body: str
    attachments: list[dict[str, Any]]
    external_id: str | None
    delivery_status: DeliveryStatus
    meta: dict[str, Any]
    created_at: datetime
    # Why it failed or went undelivered (provider code and reason), if it did.
    delivery_error: str | None = None


@dataclass(frozen=True, slots=True)
class User(_Serialisable):
    id: int
    name: str
    email: str
    role: Role
    slack_user_id: str | None
    created_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)
