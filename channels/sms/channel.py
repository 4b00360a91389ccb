"""SMS through Twilio: the channel (``HUB_CHANNELS=...,sms``).

Routes (paste them into the Twilio console, behind ``HUB_PUBLIC_URL``):

- ``POST /channels/sms/twilio``: a customer's message. The signature is
  checked on the raw body first (403 and nothing stored when it is missing
  or forged, or signed for another URL); the message is stored once per
  MessageSid and Twilio gets an empty TwiML answer at once. The bot's or an
  agent's reply leaves later through the outbox, never in this answer.
- ``POST /channels/sms/twilio/status``: Twilio's status callbacks for what
  the hub sent, signed the same way, handed to ``ChannelHost.delivery_report``.

Sending splits a long reply into messages of at most ``HUB_SMS_MAX_SEGMENTS``
segments (``segments``), gives each a ``StatusCallback`` naming the hub's
message id, and after a crash sends only the parts Twilio does not have yet
(``resend``). ``channels.sms.whatsapp`` is the same adapter for WhatsApp.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from aiohttp import web

from channels.base import Channel, InboundMessage, IngestResult, OutboundMessage, SendResult
from channels.sms.client import Sender, TwilioMessages
from channels.sms.inbound import InboundRules, check_sender_channel, parse_inbound, read_form
from channels.sms.numbers import e164, is_messaging_service
from channels.sms.resend import RECENT_LIMIT, already_sent
from channels.sms.signature import TwilioSignature
from channels.sms.status import parse_status
from hub.errors import ChannelSendError, ConfigError, InvalidInput
from hub.segments import split_message

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class SmsChannel(Channel):
    name: ClassVar[str] = "sms"
    identity_kind: ClassVar[str | None] = "phone"
    # Longer replies are refused when queued; shorter ones may still go as
    # several Twilio messages (``HUB_SMS_MAX_SEGMENTS`` segments each).
    max_text_len: ClassVar[int | None] = 4000
    required_settings = ("twilio_account_sid", "twilio_auth_token", "twilio_from")
    # STOP is honoured by the hub too: the outbox never texts an opted-out number.
    honours_opt_out: ClassVar[bool] = True
    # The setting that names this channel's sender, and the prefix of its addresses.
    sender_setting: ClassVar[str] = "twilio_from"
    address_prefix: ClassVar[str] = ""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        token = settings.twilio_auth_token.get_secret_value()
        self.public_url = settings.public_url.rstrip("/")
        self.signature = TwilioSignature(token, self.public_url)
        self.default_region = settings.sms_default_region
        self.sender = self._sender(getattr(settings, self.sender_setting))
        help_text = settings.sms_help_text.replace("{site_name}", settings.site_name).strip()
        self.rules = InboundRules(channel=self.name, default_region=self.default_region, help_text=help_text or None)
        self.twilio = TwilioMessages(
            settings.twilio_account_sid, token, api_url=settings.twilio_api_url, timeout=settings.twilio_timeout
        )

    @property
    def max_segments(self) -> int | None:
        """Segments per Twilio message; None where there are none (WhatsApp)."""
        return int(self.settings.sms_max_segments)

    def _sender(self, raw: str) -> Sender:
        raw = raw.strip()
        if is_messaging_service(raw):
            return Sender(raw, messaging_service=True)
        if raw.isascii() and raw.isdigit() and len(raw) <= 8:  # a short code
            return Sender(raw, messaging_service=False)
        try:
            return Sender(self.address_prefix + e164(raw, self.default_region, field="from"), messaging_service=False)
        except InvalidInput as err:
            setting = f"HUB_{self.sender_setting.upper()}"
            raise ConfigError(f"{setting} is neither a phone number nor a Messaging Service SID (MG...)") from err

    # --- routes ----------------------------------------------------------------
    @property
    def inbound_path(self) -> str:
        return f"/channels/{self.name}/twilio"

    @property
    def status_path(self) -> str:
        return f"/channels/{self.name}/twilio/status"

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.inbound_path, self.handle_webhook), web.post(self.status_path, self.handle_status)]

    async def handle_status(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        # A forged callback raises RefusedSignature: the error middleware answers
        # 403 with a fixed body (Twilio's documented refusal), the reason in its debug log.
        await self.verify(request, body)
        report = parse_status(read_form(body), self.name, request.query.get("message_id"))
        if report is None:
            log.debug("%s status callback reports nothing the hub sent", self.name)
            return web.Response(status=204)
        if not await self.host.delivery_report(report):
            log.debug(
                "%s status %s for %s (message %s) matched no sent message",
                self.name,
                report.status,
                report.provider_id,
                report.message_id,
            )
        return web.Response(status=204)

    # --- Channel ----------------------------------------------------------------
    async def verify(self, request: web.Request, body: bytes) -> None:
        self.signature.check(request, body)

    def parse(self, request: web.Request, body: bytes) -> list[InboundMessage]:
        form = read_form(body)
        check_sender_channel(form, self.rules, public_url=self.public_url)
        return [parse_inbound(form, self.rules)]

    def webhook_response(self, request: web.Request, results: list[IngestResult]) -> web.StreamResponse:
        return web.Response(text=EMPTY_TWIML, content_type="text/xml", charset="utf-8")

    def recipient(self, to: str) -> str:
        """The hub's address (E.164) as Twilio's ``To``."""
        try:
            return self.address_prefix + e164(to, self.default_region, field="to")
        except InvalidInput as err:
            raise ChannelSendError(f"{self.name}: the recipient is not a phone number", retryable=False) from err

    def status_callback(self, message: OutboundMessage) -> str:
        return f"{self.public_url}{self.status_path}?message_id={message.message_id}"

    async def send(self, message: OutboundMessage) -> SendResult:
        parts = split_message(message.text, max_segments=self.max_segments)
        if not parts:
            raise ChannelSendError(f"{self.name}: the message text is empty", retryable=False)
        to = self.recipient(message.to)
        sids = await self._sent_before(message, to, parts)
        callback = self.status_callback(message)
        for index, part in enumerate(parts):
            if sids[index] is None:
                sids[index] = await self.twilio.create(to=to, body=part, sender=self.sender, status_callback=callback)
        sent = tuple(sid for sid in sids if sid is not None)
        log.info("%s message %s is Twilio %s", self.name, message.message_id, ", ".join(sent))
        return SendResult(provider_id=sent[0], provider_ids=sent)

    async def _sent_before(self, message: OutboundMessage, to: str, parts: list[str]) -> list[str | None]:
        """The sids of parts an earlier attempt already sent (None: still to send)."""
        if message.attempt <= 1:
            return [None] * len(parts)
        if message.queued_at is None:
            log.warning(
                "%s message %s: attempt %s without queued_at, not checked for an earlier send",
                self.name,
                message.message_id,
                message.attempt,
            )
            return [None] * len(parts)
        recent = await self.twilio.recent(to=to, sender=self.sender, limit=RECENT_LIMIT)
        found = already_sent(parts, recent, message.queued_at)
        if any(found):
            log.info(
                "%s message %s: attempt %s finds %s of %s parts already sent (%s)",
                self.name,
                message.message_id,
                message.attempt,
                sum(1 for sid in found if sid),
                len(parts),
                ", ".join(sid for sid in found if sid),
            )
        return found

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        if self.public_url.startswith(("http://127.", "http://localhost")):
            log.warning(
                "%s: HUB_PUBLIC_URL is %s; Twilio cannot call it, and signatures only match the URL Twilio calls",
                self.name,
                self.public_url,
            )
        await self.twilio.open()
        try:
            yield
        finally:
            await self.twilio.close()
