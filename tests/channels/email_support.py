"""What the e-mail tests share: settings, a hub with the e-mail channel, an
SMTP client session, mail builders, and ``stored_file`` (the bytes the hub
kept for an attachment, as an agent downloads them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib

from tests.conftest import Hub, close_hub, free_port, make_settings, start_hub
from tests.fakes.smtp_sink import SmtpSink

SUPPORT = "help@support.example.test"
BILLING = "billing@support.example.test"
CUSTOMER = "ada@customer.example.org"
REPLY_SECRET = "test-email-reply-secret"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"


def email_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "channels": "email",
        "email_addresses": f"{SUPPORT},{BILLING}",
        "email_reply_secret": REPLY_SECRET,
        "email_smtp_port": free_port(),
        "email_relay_host": "127.0.0.1",
        "email_relay_port": free_port(),  # nothing listens: point it at a sink to send
        "email_relay_tls": "none",
        "email_relay_timeout": 5.0,
        "email_from_name": "Northwind Support",
        **overrides,
    }
    return make_settings(database_url, tmp_path, **values)


@dataclass
class EmailHub:
    hub: Hub
    sink: SmtpSink

    @property
    def smtp_port(self) -> int:
        return int(self.hub.channel("email").smtp.port)

    @property
    def channel(self) -> Any:
        return self.hub.channel("email")


@asynccontextmanager
async def email_hub(database_url: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[EmailHub]:
    sink = await SmtpSink().start()
    settings = email_settings(database_url, tmp_path, email_relay_port=sink.port, **overrides)
    hub = await start_hub(settings)
    try:
        yield EmailHub(hub=hub, sink=sink)
    finally:
        await close_hub(hub)
        await sink.close()


@dataclass(frozen=True)
class SmtpOutcome:
    """The reply codes of one SMTP transaction (0: not reached)."""

    rcpt: tuple[int, ...]
    data: int
    data_message: str = ""


async def smtp_send(
    port: int, raw: bytes, *, mail_from: str = CUSTOMER, rcpt_to: tuple[str, ...] = (SUPPORT,)
) -> SmtpOutcome:
    """One SMTP transaction with the hub's server, over a real session; every reply kept."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=15, start_tls=False, local_hostname="client.test")
    await client.connect()
    try:
        await client.ehlo()
        await client.mail("" if mail_from == "<>" else mail_from)  # "": MAIL FROM:<>
        codes = []
        for address in rcpt_to:
            try:
                codes.append((await client.rcpt(address)).code)
            except aiosmtplib.SMTPRecipientRefused as err:
                codes.append(err.code)
        if not any(200 <= code < 300 for code in codes):
            await client.rset()
            return SmtpOutcome(tuple(codes), 0)
        try:
            response = await client.data(raw)
            return SmtpOutcome(tuple(codes), response.code, response.message)
        except aiosmtplib.SMTPResponseException as err:
            return SmtpOutcome(tuple(codes), err.code, err.message)
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()


def mail(
    text: str = "Hello, my order #1234 has not arrived yet.",
    *,
    sender: str = f"Ada Lovelace <{CUSTOMER}>",
    to: str = SUPPORT,
    subject: str = "Where is my order?",
    message_id: str | None = None,
    html: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: tuple[tuple[bytes, str, str], ...] = (),
) -> bytes:
    """An ordinary customer mail as bytes (``html``: an alternative part; ``text=""`` with it: HTML only)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(domain="customer.example.org")
    for name, value in (headers or {}).items():
        message[name] = value
    if text:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content("")
    for data, filename, content_type in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def fixture_mail(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def timeline(hub: Hub, address: str = CUSTOMER) -> list[Any]:
    conversation = await hub.service.conversation_for("email", address)
    return [] if conversation is None else await hub.service.history(conversation.id)


async def stored_file(hub: Hub, attachment: dict[str, Any]) -> bytes:
    """An attachment's bytes through ``GET /api/v1/attachments/{id}``."""
    response = await hub.client.get(f"/api/v1/attachments/{attachment['id']}", headers=hub.auth("agent"))
    assert response.status == 200, response.status
    return await response.read()
