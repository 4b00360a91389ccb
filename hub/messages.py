"""The message types that the hub and every channel share.

They live in the hub so that the hub never imports a channel's module: a
channel parses into ``InboundMessage`` and sends ``OutboundMessage``; the hub
stores, routes and answers with ``IngestResult`` and ``SendResult``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
    # A consent keyword the channel recognised (SMS STOP/START): "opt_out" or
    # "opt_in". The hub records it for (channel, sender) in the same
    # transaction as the message; the bot does not answer it.
    consent: str | None = None
    # A reply the channel owes at once (SMS HELP): the hub queues it with the
    # message, in the same transaction; the bot does not answer it.
    auto_reply: str | None = None
    # Provider ids of earlier messages this one answers, nearest first (e-mail
    # In-Reply-To, then References): the hub files it in the conversation of
    # a message it sent or received with one of them, when the sender is
    # that conversation's contact (or one of their identities).
    references: tuple[str, ...] = ()
    # A conversation the channel vouches for (an e-mail reply address with a
    # valid token, support+c123.<hmac>@...): the fallback after references.
    conversation_hint: int | None = None
    # Written by a machine (auto-reply, bulk or list mail, a bounce): stored,
    # never answered automatically (no bot job, no acknowledgement).
    automated: bool = False


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
    # 1 on the first try. A later attempt may follow a crash after the
    # provider accepted the message but before the hub recorded it: a
    # channel whose provider has no idempotency key (Twilio) looks for a
    # message it already sent since ``queued_at`` before sending again.
    attempt: int = 1
    queued_at: datetime | None = None
    # For channels that thread by reference (``Channel.threads_by_reference``,
    # e-mail): the provider ids of the conversation's messages, newest first
    # (the customer's last message first), to put in In-Reply-To/References.
    references: tuple[str, ...] = ()
    # Written by the bot or the hub (not an agent): e-mail marks it
    # ``Auto-Submitted: auto-replied``.
    automated: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str | None = None
    delivered: bool = False  # True when the channel knows the customer has it
    # Set by channels whose provider reports delivery later (SMS): every
    # provider id of the send, one per part of a long message. The hub
    # records them with the send so that reports find their message.
    provider_ids: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        if self.provider_ids:
            return self.provider_ids
        return (self.provider_id,) if self.provider_id else ()


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's word on a message the hub sent (Twilio's StatusCallback).

    ``status`` is one of queued, sent, delivered, undelivered, failed (the
    hub's ``DeliveryStatus`` values); ``error_code`` is the provider's
    (Twilio 30003...) and ``error_message`` a short reason for the agent.
    ``opted_out`` says the provider refused because the recipient unsubscribed.
    ``message_id`` is the hub's message id when the channel put it in the
    signed callback URL: a report can then arrive before the send's result
    is recorded (Twilio calls back within milliseconds) and still match.
    """

    channel: str
    provider_id: str
    status: str
    message_id: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    opted_out: bool = False
    reported_at: datetime = field(default_factory=utcnow)


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

    @property
    def reply_window(self) -> timedelta | None: ...

    @property
    def honours_opt_out(self) -> bool: ...

    @property
    def threads_by_reference(self) -> bool: ...

    def bind(self, host: Any) -> None: ...

    def routes(self) -> list[web.RouteDef]: ...

    def lifespan(self, app: web.Application) -> AsyncIterator[None]: ...

    async def send(self, message: OutboundMessage) -> SendResult: ...


@runtime_checkable
class PushesTyping(Protocol):
    """A channel that can show the customer that someone is typing (the web
    chat's ``typing`` frame); the agents' console tells it while an agent types."""

    async def push_typing(self, visitor_id: str, active: bool, *, author: str = "agent") -> bool:
        """Show (or hide) the indicator on every open socket of ``visitor_id``;
        False when the customer has none open here."""
        ...
