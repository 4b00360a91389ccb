"""The hub's inbound SMTP server (``aiosmtpd``, on the hub's own event loop).

Point an MX record (or a forwarding rule, or a test tool such as ``swaks``)
at ``HUB_EMAIL_SMTP_HOST:HUB_EMAIL_SMTP_PORT``. What it answers, and why:

- ``RCPT TO``: 250 only for a support address or a ``+tag`` of one
  (``addresses.SupportAddresses.accepts``); anything else 550 5.1.1. The
  hub never relays. A message with the support address only in Cc is taken
  in like any other: the envelope, not the To header, says who it is for.
- ``EHLO`` declares ``SIZE HUB_EMAIL_MAX_BYTES``; a ``MAIL FROM ... SIZE=``
  beyond it and DATA beyond it get 552 (aiosmtpd reads and drops the excess).
- ``DATA``: 250 only after ``MailIntake.take_in`` returned, i.e. the mail is
  committed (or its bounce recorded): a crash before that leaves the sender
  without an answer, and it retries. Mail that cannot be taken in
  (``InvalidInput``) gets 554 5.6.0 with the reason; a failure of the hub
  (storage, shutting down) 451 4.3.0, so the sender retries later. No
  traceback ever reaches the wire.
- STARTTLS is offered when ``HUB_EMAIL_SMTP_TLS_CERT``/``_KEY`` are set.

The server runs on the hub's loop (``loop.create_server`` with aiosmtpd's
``SMTP`` protocol; no Controller thread). ``close`` stops listening, lets
transactions in flight finish for a few seconds, then closes every session
and waits for its task: nothing is left behind.

aiosmtpd's own log (``mail.log``) writes peers, envelope addresses and DATA
lines at INFO and DEBUG: those records are dropped (``_NoPersonalData``);
its warnings stay. This module logs counts and codes only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.addresses import SupportAddresses
from channels.email.intake import MailIntake
from hub.errors import InvalidInput, TooLarge

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 50
CLOSE_GRACE_SECONDS = 5.0
# RFC 5322 says 998 characters a line; real mail (generated HTML) has longer
# ones, which Postfix and Exim take. aiosmtpd's default (1001) would refuse them.
LINE_LENGTH_LIMIT = 1024 * 1024


class _NoPersonalData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


logging.getLogger("mail.log").addFilter(_NoPersonalData())


def reply_text(reason: str, limit: int = 200) -> str:
    """``reason`` fit for one SMTP reply line: ASCII, no line breaks, bounded."""
    text = " ".join(reason.split()).encode("ascii", "replace").decode("ascii")
    return text[:limit] or "refused"


class SupportMailHandler:
    """aiosmtpd's handler: which recipients, and what becomes of DATA."""

    def __init__(self, addresses: SupportAddresses, intake: MailIntake) -> None:
        self.addresses = addresses
        self.intake = intake
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.addresses.accepts(address):
            return "550 5.1.1 No such mailbox here"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        self.in_flight += 1
        self.idle.clear()
        try:
            received = await self.intake.take_in(
                bytes(raw),
                envelope_sender="" if mail_from == "<>" else mail_from,
                envelope_recipients=list(envelope.rcpt_tos),
            )
        except TooLarge as err:
            return f"552 5.3.4 {reply_text(err.message)}"
        except InvalidInput as err:
            log.info("email: mail refused (%s bytes): %s", len(raw), err.message)
            return f"554 5.6.0 {reply_text(err.message)}"
        except Exception as err:
            # Storage or the hub failed: the sender keeps the mail and retries.
            # The exception's text may quote the mail (SQL parameters): its type only.
            log.warning("email: mail not taken in (%s); answered 451", type(err).__name__)
            log.debug("email: why the mail was not taken in", exc_info=True)
            return "451 4.3.0 Temporary failure, please try again later"
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
        if received.ingested is not None:
            return f"250 2.0.0 OK (message {received.ingested.message.id})"
        return "250 2.0.0 OK (delivery report)"

    async def handle_exception(self, error: Exception) -> str:
        log.warning("email: SMTP session failed (%s)", type(error).__name__)
        return "451 4.3.0 Temporary failure, please try again later"


class SupportSMTP(SMTP):
    """aiosmtpd's protocol, one per connection, known to its server."""

    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(self, handler: SupportMailHandler, *, on_lost: Callable[[SupportSMTP], None], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._on_lost = on_lost

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            self._on_lost(self)

    @property
    def task(self) -> asyncio.Task[None] | None:
        task: asyncio.Task[None] | None = self._handler_coroutine
        return task


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class SmtpServer:
    """The listening socket and its sessions."""

    def __init__(
        self,
        handler: SupportMailHandler,
        *,
        host: str,
        port: int,
        hostname: str,
        max_bytes: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.hostname = hostname
        self.max_bytes = max_bytes
        self.tls = tls
        self.sessions: set[SupportSMTP] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SupportSMTP:
        session = SupportSMTP(
            self.handler,
            on_lost=self.sessions.discard,
            data_size_limit=self.max_bytes,
            enable_SMTPUTF8=True,
            hostname=self.hostname,
            ident="Servicehub ESMTP",
            tls_context=self.tls,
            loop=asyncio.get_running_loop(),
        )
        self.sessions.add(session)
        return session

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        if self.port == 0:
            self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("email: SMTP server on %s:%s%s", self.host, self.port, " (STARTTLS)" if self.tls else "")

    async def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        if self._server is None:
            return
        self._server.close()
        # A mail being stored right now gets its answer (or its 451) first.
        try:
            await asyncio.wait_for(self.handler.idle.wait(), grace)
        except TimeoutError:
            log.warning(
                "email: %s mail still being taken in at shutdown; the senders will retry", self.handler.in_flight
            )
        tasks = [session.task for session in self.sessions if session.task is not None]
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        await self._server.wait_closed()
        self._server = None
