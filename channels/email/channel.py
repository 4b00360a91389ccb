"""E-mail: the channel (``HUB_CHANNELS=...,email``; set-up in README.md here).

Mail arrives through the hub's own SMTP server (``smtp``, started in
``lifespan``; ``HUB_EMAIL_SMTP_PORT=0``: none) and from a mailbox by IMAP
(``imap``, when ``HUB_EMAIL_IMAP_HOST`` is set); both hand raw mail to
``intake.MailIntake``. There is no webhook: ``routes``
is empty, and ``verify``/``parse`` refuse what would come that way.

Replies leave through the relay (``relay``), composed by ``compose``: the
Message-ID comes from the outbox's idempotency key, the threading headers
from ``OutboundMessage.references`` (``threads_by_reference``: the outbox
fills them), the Reply-To names the conversation. ``SendResult.provider_id``
is that Message-ID, so a bounce (``bounce``) reports on the right message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from channels.base import Channel, InboundMessage, OutboundMessage, SendResult
from channels.email.addresses import SupportAddresses
from channels.email.compose import compose
from channels.email.imap import HostLeases, HostState, ImapPoller
from channels.email.imap_config import ImapConfig
from channels.email.intake import MailIntake
from channels.email.loops import SenderRate
from channels.email.relay import DkimKey, Relay
from channels.email.smtp import SmtpServer, SupportMailHandler, tls_context
from hub.errors import ChannelSendError, ConfigError, InvalidInput, InvalidSignature

log = logging.getLogger(__name__)


class EmailChannel(Channel):
    name: ClassVar[str] = "email"
    identity_kind: ClassVar[str | None] = "email"
    max_text_len: ClassVar[int | None] = 40_000
    required_settings = ("email_addresses", "email_reply_secret")
    threads_by_reference: ClassVar[bool] = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        _check_pairs(settings)
        self.addresses = SupportAddresses(
            settings.email_addresses, settings.email_reply_secret.get_secret_value().encode()
        )
        self.from_name = settings.email_from_name.strip() or settings.site_name
        self.intake = MailIntake(
            channel=self.name,
            addresses=self.addresses,
            host=lambda: self.host,
            sender_rate=SenderRate(settings.email_sender_rate),
        )
        self.relay: Relay | None = None
        self.smtp: SmtpServer | None = None
        self.imap: ImapPoller | None = None

    # --- no webhook: mail comes by SMTP (and IMAP) -------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return []

    async def verify(self, request: web.Request, body: bytes) -> None:
        raise InvalidSignature("e-mail has no webhook")

    def parse(self, request: web.Request, body: bytes) -> list[InboundMessage]:
        raise InvalidInput("e-mail arrives by SMTP or IMAP, not by webhook")

    # --- sending -------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        if self.relay is None:
            if not self.settings.email_relay_host:
                raise ChannelSendError("e-mail: HUB_EMAIL_RELAY_HOST is not set; nothing can be sent", retryable=False)
            raise ChannelSendError("e-mail: the channel is not started", retryable=True)
        if not message.text.strip():
            raise ChannelSendError("e-mail: the message text is empty", retryable=False)
        if "@" not in message.to:
            raise ChannelSendError("e-mail: the recipient is not an e-mail address", retryable=False)
        composed = compose(
            addresses=self.addresses,
            from_name=self.from_name,
            to=message.to,
            text=message.text,
            subject=message.subject,
            fallback_subject=f"Your message to {self.settings.site_name}",
            idempotency_key=message.idempotency_key,
            conversation_id=message.conversation_id,
            references=message.references,
            automated=message.automated,
        )
        message_id = str(composed["Message-ID"])
        await self.relay.send(composed.as_bytes(), sender=self.addresses.primary.address, recipient=message.to)
        log.info("email: message %s sent as %s", message.message_id, message_id)
        return SendResult(provider_id=message_id, provider_ids=(message_id,))

    # --- lifespan ------------------------------------------------------------------------
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        settings = self.settings
        self.relay = await self._relay()
        if self.relay is None:
            log.warning("email: HUB_EMAIL_RELAY_HOST is not set; replies cannot be sent")
        if settings.email_smtp_port:
            tls = None
            if settings.email_smtp_tls_cert and settings.email_smtp_tls_key:
                try:
                    tls = await asyncio.to_thread(
                        tls_context, settings.email_smtp_tls_cert, settings.email_smtp_tls_key
                    )
                except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                    raise ConfigError(f"HUB_EMAIL_SMTP_TLS_CERT/_KEY cannot be loaded ({type(err).__name__})") from err
            self.smtp = SmtpServer(
                SupportMailHandler(self.addresses, self.intake),
                host=settings.email_smtp_host,
                port=settings.email_smtp_port,
                hostname=self.addresses.primary.domain,
                max_bytes=settings.email_max_bytes,
                tls=tls,
            )
            await self.smtp.start()
        reader = None
        if settings.email_imap_host:
            self.imap = ImapPoller(
                ImapConfig.from_settings(settings),
                self._from_mailbox,
                HostState(self.host, self.name),
                leases=HostLeases(self.host),  # one reader per folder across hub instances
            )
            reader = asyncio.create_task(self.imap.run(), name="email-imap")
        try:
            yield
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            if self.smtp is not None:
                await self.smtp.close()
                self.smtp = None

    async def _from_mailbox(self, raw: bytes) -> None:
        """One mail the IMAP poller read: taken in, or dropped with a log line
        when it never can be (it stays in the mailbox); anything else raises,
        and the poller tries that mail again before any later one."""
        try:
            await self.intake.take_in(raw)
        except InvalidInput as err:
            log.warning("email: a mail in the mailbox cannot be taken in and is left there (%s)", err.message[:200])

    async def _relay(self) -> Relay | None:
        settings = self.settings
        if not settings.email_relay_host:
            return None
        dkim_key = None
        if settings.email_dkim_selector and settings.email_dkim_key_file:
            key = await asyncio.to_thread(_read_key, settings.email_dkim_key_file)
            dkim_key = DkimKey(settings.email_dkim_selector, self.addresses.primary.domain, key)
        password = settings.email_relay_password
        return Relay(
            host=settings.email_relay_host,
            port=settings.email_relay_port,
            tls=settings.email_relay_tls,
            username=settings.email_relay_username,
            password=password.get_secret_value() if password is not None else None,
            timeout=settings.email_relay_timeout,
            local_hostname=self.addresses.primary.domain,
            dkim_key=dkim_key,
        )


def _check_pairs(settings: Any) -> None:
    """Settings that only work together: ConfigError naming the one missing."""
    pairs = (
        ("email_smtp_tls_cert", "email_smtp_tls_key"),
        ("email_dkim_selector", "email_dkim_key_file"),
    )
    for first, second in pairs:
        given = [bool(getattr(settings, first)), bool(getattr(settings, second))]
        if any(given) and not all(given):
            missing = second if given[0] else first
            present = first if given[0] else second
            raise ConfigError(f"HUB_{present.upper()} needs HUB_{missing.upper()}")
    if settings.email_relay_username and settings.email_relay_password is None:
        raise ConfigError("HUB_EMAIL_RELAY_USERNAME needs HUB_EMAIL_RELAY_PASSWORD")


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"HUB_EMAIL_DKIM_KEY_FILE cannot be read ({err.strerror})") from err
