"""Sending e-mail (channels/email/compose.py, relay.py) to a real SMTP sink on
loopback, and the SMTP server's STARTTLS: the channel alone, started by its
own lifespan (no hub, no inbound server unless a test asks for one).

Keys and certificates are made with the system's ``openssl`` for each test.
"""

from __future__ import annotations

import base64
import logging
import re
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import dkim
import pytest
import pytest_asyncio

from channels.email import EmailChannel
from channels.email.compose import MAX_REFERENCES, message_id_for, reply_subject
from channels.email.relay import smtp_error
from hub.errors import ChannelSendError
from hub.messages import OutboundMessage
from tests.channels.email_support import CUSTOMER, SUPPORT, email_settings
from tests.conftest import free_port
from tests.fakes.smtp_sink import SmtpSink

DOMAIN = SUPPORT.split("@")[1]


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await SmtpSink().start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def started(tmp_path: Path, **overrides: Any) -> AsyncIterator[EmailChannel]:
    values: dict[str, Any] = {"email_smtp_port": 0, **overrides}
    channel = EmailChannel.from_settings(email_settings("sqlite:///unused.db", tmp_path, **values))
    async with asynccontextmanager(channel.lifespan)(None):  # type: ignore[arg-type]  # the lifespan never reads the app
        yield channel


def outbound(
    text: str = "Your refund is on its way.\n\nSee https://example.test/refunds", **fields: Any
) -> OutboundMessage:
    values: dict[str, Any] = {
        "message_id": 41,
        "conversation_id": 7,
        "channel": "email",
        "to": CUSTOMER,
        "text": text,
        "idempotency_key": "outbox-41",
        "subject": "Where is my order?",
        **fields,
    }
    return OutboundMessage(**values)


# --- headers -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_reply_threads_and_routes_back(tmp_path: Path, sink: SmtpSink) -> None:
    references = ("<c3@customer.example.org>", "<outbox-40@support.example.test>", "<c1@customer.example.org>")
    async with started(tmp_path, email_relay_port=sink.port) as channel:
        result = await channel.send(outbound(references=references))
    [sent] = sink.messages
    message = sent.message
    assert result.provider_id == message["Message-ID"] == f"<outbox-41@{DOMAIN}>"
    assert result.provider_ids == (result.provider_id,)
    assert message["In-Reply-To"] == "<c3@customer.example.org>"  # the customer's last mail
    assert (
        message["References"] == "<c1@customer.example.org> <outbox-40@support.example.test> <c3@customer.example.org>"
    )
    reply_to = message["Reply-To"].addresses[0].addr_spec
    assert reply_to == f"help+c7.{channel.addresses.token(7)}@{DOMAIN}"
    assert message["Subject"] == "Re: Where is my order?"
    assert str(message["From"]) == f"Northwind Support <{SUPPORT}>"
    assert "Auto-Submitted" not in message
    assert message.get_content_type() == "multipart/alternative"
    assert sent.text().replace("\r\n", "\n") == "Your refund is on its way.\n\nSee https://example.test/refunds\n"
    assert '<p>See <a href="https://example.test/refunds">https://example.test/refunds</a></p>' in sent.html()
    assert sent.mail_from == SUPPORT and sent.rcpt_tos == (CUSTOMER,)


@pytest.mark.asyncio
async def test_a_retry_after_a_crash_sends_the_same_message_id(tmp_path: Path, sink: SmtpSink) -> None:
    async with started(tmp_path, email_relay_port=sink.port) as channel:
        first = await channel.send(outbound())
        again = await channel.send(outbound(attempt=2))
    assert first.provider_id == again.provider_id
    assert [m.message["Message-ID"] for m in sink.messages] == [first.provider_id] * 2


def test_message_ids_are_dot_atoms_within_64_characters() -> None:
    assert message_id_for("outbox-41", DOMAIN) == f"<outbox-41@{DOMAIN}>"
    for key in ("auto-reply:12", "x" * 200, "a..b", "ключ", "has space"):
        made = message_id_for(key, DOMAIN)
        assert re.fullmatch(r"<h[0-9a-f]{32}@support\.example\.test>", made), made
        assert made == message_id_for(key, DOMAIN) and len(made) <= 64


def test_subject_is_re_once() -> None:
    assert reply_subject("Where is my order?", "x") == "Re: Where is my order?"
    assert reply_subject("RE: Invoice", "x") == "RE: Invoice"
    assert reply_subject("AW: Rechnung", "x") == "AW: Rechnung"
    assert reply_subject("Re[2]: thread", "x") == "Re[2]: thread"
    assert reply_subject("Regarding invoices", "x") == "Re: Regarding invoices"
    assert reply_subject(None, "Your message to Northwind") == "Your message to Northwind"


@pytest.mark.asyncio
async def test_bot_replies_are_auto_submitted_and_references_are_bounded(tmp_path: Path, sink: SmtpSink) -> None:
    references = tuple(f"<m{n}@customer.example.org>" for n in range(40))  # newest first
    async with started(tmp_path, email_relay_port=sink.port) as channel:
        await channel.send(outbound(automated=True, references=references, subject=None))
    message = sink.messages[0].message
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    kept = str(message["References"]).split()
    assert len(kept) == MAX_REFERENCES
    assert kept[-1] == "<m0@customer.example.org>" and kept[0] == f"<m{MAX_REFERENCES - 1}@customer.example.org>"
    assert message["In-Reply-To"] == "<m0@customer.example.org>"
    assert message["Subject"] == "Your message to Northwind Outfitters Help Center"


@pytest.mark.asyncio
async def test_relay_auth(tmp_path: Path) -> None:
    sink = await SmtpSink(credentials=("hub", "relay-password")).start()
    try:
        settings = {
            "email_relay_port": sink.port,
            "email_relay_username": "hub",
            "email_relay_password": "relay-password",
        }
        async with started(tmp_path, **settings) as channel:
            await channel.send(outbound())
        assert sink.messages[0].authenticated_as == "hub"
        async with started(tmp_path, **{**settings, "email_relay_password": "wrong"}) as channel:
            with pytest.raises(ChannelSendError) as refused:
                await channel.send(outbound())
        assert not refused.value.retryable and refused.value.provider_code == "535"
    finally:
        await sink.close()


# --- failures ------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fail_at", "reply", "retryable", "code"),
    [
        ("DATA", "451 4.3.0 Try again later", True, "451"),
        ("DATA", "452 4.3.1 Insufficient storage", True, "452"),
        ("DATA", "554 5.7.1 Message rejected as spam", False, "554"),
        ("RCPT", "550 5.1.1 <ada@customer.example.org>: no such user", False, "550"),
        ("RCPT", "450 4.2.0 Greylisted", True, "450"),
    ],
)
async def test_smtp_4xx_is_retryable_and_5xx_permanent(
    tmp_path: Path, sink: SmtpSink, fail_at: str, reply: str, retryable: bool, code: str
) -> None:
    sink.fail_at, sink.fail_next = fail_at, [reply]
    async with started(tmp_path, email_relay_port=sink.port) as channel:
        with pytest.raises(ChannelSendError) as failed:
            await channel.send(outbound())
    assert failed.value.retryable is retryable
    assert failed.value.provider_code == code
    assert CUSTOMER not in failed.value.message and "spam" not in failed.value.message


@pytest.mark.asyncio
async def test_an_unreachable_relay_is_retryable_and_no_relay_is_permanent(tmp_path: Path) -> None:
    async with started(tmp_path, email_relay_port=free_port()) as channel:
        with pytest.raises(ChannelSendError) as failed:
            await channel.send(outbound())
    assert failed.value.retryable
    async with started(tmp_path, email_relay_host=None) as channel:
        with pytest.raises(ChannelSendError, match="HUB_EMAIL_RELAY_HOST") as failed:
            await channel.send(outbound())
    assert not failed.value.retryable


def test_smtp_error_keeps_codes_not_words() -> None:
    error = smtp_error(550, "refused the message", "5.1.1 <ada@customer.example.org> unknown")
    assert error.message == "e-mail relay refused the message: SMTP 550 5.1.1"
    assert not error.retryable and error.provider_code == "550"


@pytest.mark.asyncio
async def test_sending_logs_ids_not_addresses_or_words(
    tmp_path: Path, sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with started(tmp_path, email_relay_port=sink.port) as channel:
            await channel.send(outbound("Private refund details"))
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("channels", "aiosmtplib")))
    assert "message 41 sent as <outbox-41@" in logged
    assert CUSTOMER not in logged and "Private refund" not in logged


# --- DKIM ----------------------------------------------------------------------------------
def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.mark.asyncio
async def test_dkim_signature_verifies_with_the_published_key(tmp_path: Path, sink: SmtpSink) -> None:
    key, public = tmp_path / "dkim.pem", tmp_path / "dkim.pub"
    openssl("genrsa", "-out", str(key), "2048")
    openssl("rsa", "-in", str(key), "-pubout", "-out", str(public))
    published = "".join(line for line in public.read_text().splitlines() if "-----" not in line)
    settings = {"email_relay_port": sink.port, "email_dkim_selector": "hub2025", "email_dkim_key_file": key}
    async with started(tmp_path, **settings) as channel:
        await channel.send(outbound(references=("<c1@customer.example.org>",)))
    raw = sink.messages[0].raw
    assert raw.startswith(b"DKIM-Signature: ")
    signature = sink.messages[0].message["DKIM-Signature"]
    assert "d=support.example.test" in str(signature) and "s=hub2025" in str(signature)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"hub2025._domainkey.support.example.test."
        return b"v=DKIM1; k=rsa; p=" + published.encode()

    assert dkim.verify(raw, dnsfunc=dns)
    assert not dkim.verify(raw.replace(b"refund", b"refunc"), dnsfunc=dns)
    assert base64.b64decode(published)  # the key we published is the one that signed


# --- the SMTP server's STARTTLS ------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_smtp_server_offers_starttls_with_a_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=mx.support.example.test",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    port = free_port()
    async with started(tmp_path, email_smtp_port=port, email_smtp_tls_cert=cert, email_smtp_tls_key=key) as channel:
        assert channel.smtp is not None
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, tls_context=context, timeout=10)
        await client.connect()
        try:
            await client.ehlo()
            assert client.supports_extension("starttls")
            await client.starttls()
            assert client.get_transport_info("sslcontext") is not None or client.is_ehlo_or_helo_needed is not None
            await client.ehlo()
            assert not client.supports_extension("starttls")  # done
            assert client.supports_extension("size")
        finally:
            await client.quit()
