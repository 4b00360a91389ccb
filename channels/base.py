"""The channel interface (after Rasa's InputChannel/OutputChannel).

A channel only translates. It verifies and parses what arrives and sends what
leaves; it never touches storage or the bus. The hub hands every channel a
``ChannelHost`` (``bind``) through which parsed messages enter the shared
ingest path, and calls ``send`` from the durable outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

from aiohttp import web

from hub.errors import ConfigError, HubError, InvalidInput, TooLarge
from hub.inputs import check_inbound, clean_text

# The message types live in the hub (which never imports a channel); they are
# re-exported here so channel code keeps importing them from its interface.
from hub.messages import DeliveryReport, InboundMessage, IngestResult, OutboundMessage, SendResult

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.models import Conversation, Message

log = logging.getLogger(__name__)


class ChannelHost(Protocol):
    """What the hub offers a channel. Implemented by ``hub.conversations.service.HubService``."""

    async def ingest(self, inbound: InboundMessage) -> IngestResult:
        """Store ``inbound`` (deduplicated on ``(channel, external_id)``) and publish it."""

    async def conversation_for(self, channel: str, address: str) -> Conversation | None:
        """The latest conversation of that channel address, if any."""

    async def history(self, conversation_id: int, *, after_id: int | None = None, limit: int = 50) -> list[Message]:
        """Customer-visible messages of one conversation (no notes), oldest first."""

    async def agents_online(self) -> bool:
        """Whether a human can answer now: the duty roster under
        ``HUB_WEBCHAT_AGENTS_ONLINE=auto``, else the fixed setting."""

    async def store_attachment(self, data: bytes, *, filename: str | None, content_type: str) -> dict[str, Any]:
        """Keep an attachment's bytes (content-addressed under the data dir,
        size-capped: ``TooLarge`` beyond ``HUB_ATTACHMENT_MAX_BYTES``) and return
        the metadata to put in ``InboundMessage.attachments``: ``{"id", "sha256",
        "filename", "content_type", "size"}``; agents fetch it through
        ``GET /api/v1/attachments/{id}``. Storing the same bytes again is a no-op."""

    async def was_erased(self, channel: str, external_id: str) -> bool:
        """Whether a delivery with that provider id belonged to a contact who
        was erased since (a mailbox read again must not bring them back)."""

    async def channel_state(self, channel: str, key: str) -> str | None:
        """A value a channel keeps across restarts (an IMAP folder's
        UIDVALIDITY and last UID), shared by every hub instance."""

    async def set_channel_state(self, channel: str, key: str, value: str) -> None:
        """Store ``value`` under ``(channel, key)``, replacing what was there."""

    async def hold_lease(self, name: str) -> bool:
        """Take or renew the lease ``name`` for this hub instance: True while it
        is ours, False while another instance holds it. A loop that must run
        on one instance only (one IMAP reader per mailbox folder) runs while
        it holds the lease and renews it well within ``lease_seconds``."""

    async def release_lease(self, name: str) -> None:
        """Give the lease up (the loop stopped): another instance takes it over."""

    @property
    def lease_seconds(self) -> float:
        """How long a lease lasts unless renewed."""

    async def answer_survey(
        self, channel: str, address: str, survey_id: int, rating: int | None, comment: str | None
    ) -> tuple[str, str]:
        """A customer's answer to a CSAT survey sent to ``address`` on
        ``channel`` (a rating 1-5, or the optional comment after it):
        ``(outcome, text to show them)``, outcome ``recorded``,
        ``already-answered`` or ``expired``. ``Forbidden`` when the survey was
        not sent to that address; ``InvalidInput`` for a bad rating."""

    async def delivery_report(self, report: DeliveryReport) -> bool:
        """Record a provider's delivery status for a message the hub sent
        (matched on ``(channel, provider_id)``); False when no sent message
        has that id (the provider may report before the send is recorded,
        and will retry). Statuses only move forward; repeats are no-ops."""


class PushRelay(Protocol):
    """Carries a channel's live pushes to the sockets other hub instances
    hold (``hub.relay`` over Redis pub/sub). A channel without one pushes to
    its own sockets only: one instance, no overhead.

    Live pushes are at-most-once; the timeline stays the record, read again
    on every (re)connect."""

    async def relay(self, address: str, frames: Sequence[dict[str, Any]], *, want_ack: bool) -> bool:
        """Have every other instance push ``frames``, in order, to the sockets
        it holds for ``address``. With ``want_ack``: True once an instance
        says it pushed them to an open socket; False when none did within a
        short wait (or Redis is unreachable). Without: returns False at once.
        Never raises."""


@runtime_checkable
class RelaysPushes(Protocol):
    """A channel that holds customers' sockets and can be given a ``PushRelay``
    (the web chat); ``hub/app.py`` wires one when HUB_REDIS_URL is set."""

    name: ClassVar[str]

    def use_relay(self, relay: PushRelay | None) -> None:
        """Relay every push from now on (None: local sockets only)."""

    async def push_local(self, address: str, frames: Sequence[dict[str, Any]]) -> bool:
        """Push ``frames`` to this instance's open sockets of ``address``
        (what another instance relayed); True when one took them."""

    async def resync(self) -> None:
        """Relayed pushes may have been lost (the relay's subscription was
        re-established): bring every open socket up to date from the record."""


class Channel(ABC):
    """Base of every channel adapter.

    Contract:
    - ``from_settings`` raises ``ConfigError`` naming every missing key.
    - ``verify`` MUST run on the raw body before anything is parsed, compare
      in constant time (``same_signature``), and raise ``InvalidSignature``
      (never another error, whatever the body or headers hold) when the
      request is not authentic.
    - ``parse`` is pure: it raises ``InvalidInput`` with a reason for
      malformed payloads and returns one ``InboundMessage`` per message.
      JSON is read with ``hub.inputs.load_json`` (depth, NaN, Unicode);
      ``admit`` checks what ``parse`` returns before anything is stored.
    - ``send`` raises ``ChannelSendError(retryable=...)``; it may be called
      again with the same ``idempotency_key`` after a crash.
    """

    name: ClassVar[str]
    max_text_len: ClassVar[int | None] = None
    supports_attachments: ClassVar[bool] = False
    required_settings: ClassVar[Sequence[str]] = ()
    # What kind of address a sender is: "email", "phone" (E.164) or, by
    # default, an id local to this channel (its name).
    identity_kind: ClassVar[str | None] = None
    # How long after the customer's last message a free-form reply may go out
    # (WhatsApp's 24-hour customer-service window); None: any time. The
    # outbox dead-letters a reply outside it with the reason, for the agent.
    reply_window: ClassVar[timedelta | None] = None
    # Recipients can opt out of this channel (SMS STOP): the outbox checks
    # every send against the opt-outs and dead-letters one to such an address.
    honours_opt_out: ClassVar[bool] = False
    # Threads by provider ids (e-mail's Message-ID): the outbox gives every
    # send the conversation's ids (``OutboundMessage.references``).
    threads_by_reference: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._host: ChannelHost | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        missing = [key for key in cls.required_settings if not getattr(settings, key, None)]
        if missing:
            names = ", ".join(f"HUB_{key.upper()}" for key in missing)
            raise ConfigError(f"channel {cls.name!r} needs {names}")
        return cls(settings)

    def bind(self, host: ChannelHost) -> None:
        self._host = host

    @property
    def host(self) -> ChannelHost:
        if self._host is None:
            raise RuntimeError(f"channel {self.name!r} is not bound to a hub")
        return self._host

    @property
    def address_kind(self) -> str:
        return self.identity_kind or self.name

    @property
    def webhook_path(self) -> str:
        return f"/channels/{self.name}/webhook"

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes of this channel; by default one signed webhook."""
        return [web.post(self.webhook_path, self.handle_webhook)]

    async def handle_webhook(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        await self.verify(request, body)
        # The whole batch is checked before any of it is stored: a provider
        # retries a refused delivery whole, and must not find half of it kept.
        inbound = self.admit(self.parse(request, body))
        results = [await self.host.ingest(message) for message in inbound]
        return self.webhook_response(request, results)

    def admit(self, messages: list[InboundMessage]) -> list[InboundMessage]:
        """Every message of a delivery checked where it enters the hub
        (``hub.inputs.check_inbound``: valid Unicode, NFC, stored lengths),
        all before any is stored; InvalidInput naming the item and field."""
        if len(messages) == 1:
            return [check_inbound(messages[0])]
        return [check_inbound(message, item=f"item {index}: ") for index, message in enumerate(messages)]

    @staticmethod
    def same_signature(expected: str, given: str) -> bool:
        """Whether a request's signature header ``given`` is ``expected``, in
        constant time. As bytes: ``hmac.compare_digest`` raises TypeError on a
        str with non-ASCII characters, which a forged header may hold."""
        return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))

    @staticmethod
    def delivery_id(signature: str, index: int) -> str:
        """An external id for an item its provider sent without one: the
        delivery's signature (it covers the timestamp and the body) and the
        item's place. A replay of the same signed request within the replay
        window gets the same id, so ingest stores it once (durably, on every
        instance); the same words sent again later are a new delivery."""
        return "sig:" + hashlib.sha256(f"{signature}:{index}".encode()).hexdigest()[:40]

    def webhook_response(self, request: web.Request, results: list[IngestResult]) -> web.StreamResponse:
        return web.json_response(
            {"received": [{"message_id": r.message.id, "duplicate": r.duplicate} for r in results]}
        )

    @abstractmethod
    async def verify(self, request: web.Request, body: bytes) -> None: ...

    @abstractmethod
    def parse(self, request: web.Request, body: bytes) -> list[InboundMessage]: ...

    @abstractmethod
    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Cleanup context: open clients/servers/sockets, ``yield``, close them."""
        yield

    def check_text(self, text: str) -> str:
        text = clean_text(text, "text")
        if not text or not text.strip():
            raise InvalidInput("message text is empty")
        if self.max_text_len is not None and len(text) > self.max_text_len:
            raise TooLarge(f"message text is {len(text)} characters; {self.name} allows {self.max_text_len}")
        return text


__all__ = [
    "Channel",
    "ChannelHost",
    "DeliveryReport",
    "HubError",
    "InboundMessage",
    "IngestResult",
    "OutboundMessage",
    "PushRelay",
    "RelaysPushes",
    "SendResult",
]
