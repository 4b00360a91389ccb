"""The message types that the hub and every channel share.

They live in the hub so that the hub never imports a channel's module: a
channel parses into ``InboundMessage`` and sends ``OutboundMessage``; the hub
stores, routes and answers with ``IngestResult`` and ``SendResult``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from hub.events import utcnow

if TYPE_CHECKING:
    from hub.models import Conversation, Message


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One customer message as a channel parsed it.

    ``external_id`` is the provider's id (Twilio MessageSid, Message-ID,
    client-generated chat id): a retried delivery carries the same one and is
    stored once. ``sender`` is the channel address before normalisation.
    """

    channel: str
    sender: str
    text: str
    external_id: str | None = None
    sender_name: str | None = None
    thread_key: str | None = None
    subject: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    # Other addresses of the same person that the channel vouches for
    # (e.g. {"email": "a@b.c"} from signed identity verification). Verified
    # hints link or merge contacts; unverified ones are kept as attributes.
    contact_hints: dict[str, str] = field(default_factory=dict)
    hints_verified: bool = False
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to deliver; ``idempotency_key`` is stable across retries."""

    message_id: int
    conversation_id: int
    channel: str
    to: str
    text: str
    idempotency_key: str
    subject: str | None = None
    thread_key: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str | None = None
    delivered: bool = False  # True when the channel knows the customer has it


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What the hub stored; ``message.contact_id`` names the resolved contact."""

    message: Message
    conversation: Conversation
    duplicate: bool


class ChannelAdapter(Protocol):
    """What the hub uses of a channel (``channels.base.Channel`` is one), so
    that the hub can hold and call channels without importing their package."""

    @property
    def name(self) -> str: ...

    @property
    def max_text_len(self) -> int | None: ...

    @property
    def address_kind(self) -> str: ...

    def bind(self, host: Any) -> None: ...

    def routes(self) -> list[web.RouteDef]: ...

    def lifespan(self, app: web.Application) -> AsyncIterator[None]: ...

    async def send(self, message: OutboundMessage) -> SendResult: ...
