"""A loopback SMTP server that collects what it is sent (the hub's relay in tests).

A real ``aiosmtpd`` server on ``127.0.0.1:0``, on the test's event loop
(aiohttp ``examples/fake_server.py`` style): point ``HUB_EMAIL_RELAY_HOST``/
``_PORT`` at ``sink.host``/``sink.port`` with ``HUB_EMAIL_RELAY_TLS=none``.

- ``messages``: every accepted mail (``SunkMail``: envelope and the parsed
  message, ``policy=default``), in order; ``wait_for(n)`` waits for them.
- ``fail_next``: SMTP replies (``"451 4.3.0 Try again later"``,
  ``"550 5.1.1 No such user"``) given, one each, to the next transactions
  instead of accepting them, at ``fail_at`` (``"RCPT"`` or ``"DATA"``).
- ``credentials``: when set, AUTH PLAIN/LOGIN with exactly these is required
  (over plain text: it is loopback).
- ``tls``: an ``ssl.SSLContext`` offered with STARTTLS.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class SunkMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    authenticated_as: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())

    def html(self) -> str:
        body = self.message.get_body(preferencelist=("html",))
        assert body is not None
        return str(body.get_content())


@dataclass
class SmtpSink:
    credentials: tuple[str, str] | None = None
    tls: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[SunkMail] = field(default_factory=list)
    fail_next: list[str] = field(default_factory=list)
    fail_at: str = "DATA"
    sessions: int = 0
    _server: asyncio.Server | None = None
    _protocols: list[SMTP] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def _protocol(self) -> SMTP:
        self.sessions += 1
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs = {"auth_required": True, "auth_require_tls": False, "authenticator": self._authenticate}
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": on loopback, on purpose.
            warnings.simplefilter("ignore", UserWarning)
            protocol = SMTP(
                self,
                hostname="sink.example.test",
                tls_context=self.tls,
                loop=asyncio.get_running_loop(),
                **kwargs,
            )
        self._protocols.append(protocol)
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self.credentials == (data.login.decode(), data.password.decode()):
            return AuthResult(success=True, auth_data=data.login.decode())
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.fail_at == "RCPT" and self.fail_next:
            return self.fail_next.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_at == "DATA" and self.fail_next:
            return self.fail_next.pop(0)
        auth = session.auth_data
        self.messages.append(
            SunkMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=bytes(envelope.original_content or b""),
                authenticated_as=str(auth) if auth is not None else None,
            )
        )
        self._arrived.set()
        return "250 2.0.0 Queued"

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[SunkMail]:
        async def arrived() -> None:
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(arrived(), timeout)
        return self.messages

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        tasks = []
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()
            task = getattr(protocol, "_handler_coroutine", None)
            if task is not None:
                task.cancel()
                tasks.append(task)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._server.wait_closed()
        self._server = None
