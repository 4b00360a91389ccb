"""The e-mail channel through a running hub, over real SMTP on loopback.

Mail goes to the hub's own SMTP server with ``aiosmtplib`` (a real client:
EHLO, MAIL, RCPT, DATA); replies leave through the relay to an ``aiosmtpd``
sink (tests/fakes/smtp_sink.py). The channel's host is the hub's service
behind ``AttachmentShim`` (tests/channels/email_support.py) until the hub
implements ``store_attachment``; ``test_email_hub.py`` runs the same paths
without it. Sending details (headers, DKIM, relay failures) are in
``test_email_send.py``; reading mail in ``test_email_parse.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import pytest_asyncio
import sqlalchemy as sa

from channels.email.addresses import SupportAddresses
from hub.errors import ConfigError
from tests.channels.email_support import (
    BILLING,
    CUSTOMER,
    FIXTURES,
    REPLY_SECRET,
    SUPPORT,
    EmailHub,
    email_hub,
    email_settings,
    fixture_mail,
    mail,
    smtp_send,
    stored_file,
    timeline,
)
from tests.conftest import wait_for


@pytest_asyncio.fixture
async def running(database_url: str, tmp_path: Path) -> AsyncIterator[EmailHub]:
    async with email_hub(database_url, tmp_path, email_max_bytes=64 * 1024) as hub:
        yield hub


async def message_count(running: EmailHub) -> int:
    from hub.storage.schema import messages

    return int(
        await running.hub.db.read(
            lambda conn: conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()
        )
    )


# --- settings ------------------------------------------------------------------------------
def test_settings_name_what_is_missing_or_incomplete(tmp_path: Path) -> None:
    from channels.email import EmailChannel

    with pytest.raises(ConfigError) as refused:
        EmailChannel.from_settings(email_settings("sqlite:///unused.db", tmp_path, email_addresses=None))
    assert "HUB_EMAIL_ADDRESSES" in refused.value.message
    with pytest.raises(ConfigError, match="HUB_EMAIL_SMTP_TLS_KEY"):
        EmailChannel.from_settings(email_settings("sqlite:///unused.db", tmp_path, email_smtp_tls_cert=tmp_path / "c"))
    with pytest.raises(ConfigError, match="HUB_EMAIL_DKIM_KEY_FILE"):
        EmailChannel.from_settings(email_settings("sqlite:///unused.db", tmp_path, email_dkim_selector="s1"))
    with pytest.raises(ConfigError, match="HUB_EMAIL_RELAY_PASSWORD"):
        EmailChannel.from_settings(email_settings("sqlite:///unused.db", tmp_path, email_relay_username="u"))
    with pytest.raises(ConfigError, match="not an e-mail address"):
        EmailChannel.from_settings(email_settings("sqlite:///unused.db", tmp_path, email_addresses="help"))
    channel = EmailChannel.from_settings(email_settings("sqlite:///unused.db", tmp_path))
    assert channel.threads_by_reference and channel.address_kind == "email" and channel.routes() == []


# --- inbound ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_mail_lands_on_the_timeline_with_its_original(running: EmailHub) -> None:
    raw = mail("Hello, my order #1234 has not arrived yet.", message_id="<first@customer.example.org>")
    outcome = await smtp_send(running.smtp_port, raw)
    assert outcome.rcpt == (250,) and outcome.data == 250, outcome
    [message] = await timeline(running.hub)
    assert message.body == "Hello, my order #1234 has not arrived yet."
    assert message.external_id == "<first@customer.example.org>"
    conversation = await running.hub.service.get_conversation(message.conversation_id)
    assert conversation.subject == "Where is my order?"
    contact = await running.hub.service.get_contact(message.contact_id)
    assert contact.name == "Ada Lovelace"
    [original] = message.attachments
    assert original["kind"] == "original" and original["filename"] == "original.eml"
    assert original["content_type"] == "message/rfc822"
    kept = await stored_file(running.hub, original)
    assert kept.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    # Through the API as an agent sees it.
    page = await running.hub.api("GET", f"/api/v1/conversations/{conversation.id}/timeline", role="agent")
    assert [m["body"] for m in page["items"] if m["direction"] == "inbound"] == [message.body]


@pytest.mark.asyncio
async def test_unknown_recipient_is_refused_at_rcpt_and_nothing_is_stored(running: EmailHub) -> None:
    outcome = await smtp_send(
        running.smtp_port, mail(), rcpt_to=("someone@elsewhere.example", "nobody@support.example.test")
    )
    assert outcome == type(outcome)((550, 550), 0)
    # An open relay would take the first: the hub takes only its own, and the mail once.
    mixed = await smtp_send(running.smtp_port, mail(), rcpt_to=("victim@elsewhere.example", SUPPORT))
    assert mixed.rcpt == (550, 250) and mixed.data == 250
    assert await message_count(running) == 1


@pytest.mark.asyncio
async def test_oversized_mail_is_refused_with_552_and_nothing_is_stored(running: EmailHub) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=running.smtp_port, start_tls=False, timeout=15)
    await client.connect()
    try:
        await client.ehlo()
        assert client.supports_extension("size")
        assert client.esmtp_extensions["size"] == str(64 * 1024)
    finally:
        await client.quit()
    big = mail("x" * 100 * 1024)
    outcome = await smtp_send(running.smtp_port, big)
    assert outcome.data == 552, outcome
    # Declared beforehand, it is refused at MAIL FROM.
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=running.smtp_port, start_tls=False, timeout=15)
    await client.connect()
    try:
        await client.ehlo()
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await client.mail(CUSTOMER, options=[f"SIZE={len(big)}"])
        assert refused.value.code == 552
    finally:
        await client.quit()
    assert await message_count(running) == 0


@pytest.mark.asyncio
async def test_tags_cc_only_and_every_support_address_are_taken_in(running: EmailHub) -> None:
    cc_only = mail("Cc only", to="someone@partner.example", headers={"Cc": BILLING}, message_id="<cc@c.example>")
    assert (await smtp_send(running.smtp_port, cc_only, rcpt_to=(BILLING,))).data == 250
    tagged = mail("Tagged", message_id="<tag@c.example>")
    assert (await smtp_send(running.smtp_port, tagged, rcpt_to=("Help+Orders@support.example.test",))).data == 250
    assert sorted(m.body for m in await timeline(running.hub)) == ["Cc only", "Tagged"]


@pytest.mark.asyncio
async def test_a_retried_message_id_is_stored_once(running: EmailHub) -> None:
    raw = mail("Please call me back", message_id="<retried@customer.example.org>")
    outcomes = [await smtp_send(running.smtp_port, raw) for _ in range(3)]
    assert [o.data for o in outcomes] == [250, 250, 250]
    assert len({o.data_message for o in outcomes}) == 1  # the same stored message each time
    assert [m.body for m in await timeline(running.hub)] == ["Please call me back"]


@pytest.mark.asyncio
async def test_several_mails_in_one_session(running: EmailHub) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=running.smtp_port, start_tls=False, timeout=15)
    await client.connect()
    try:
        for n in range(5):
            await client.sendmail(CUSTOMER, [SUPPORT], mail(f"Message {n}", message_id=f"<s{n}@customer.example.org>"))
    finally:
        await client.quit()
    assert [m.body for m in await timeline(running.hub)] == [f"Message {n}" for n in range(5)]


@pytest.mark.asyncio
async def test_html_only_mail_is_readable(running: EmailHub) -> None:
    raw = mail("", html="<html><body><h1>Refund</h1><p>I want my <b>money</b> back.</p></body></html>")
    assert (await smtp_send(running.smtp_port, raw)).data == 250
    [message] = await timeline(running.hub)
    assert message.body == "Refund\n\nI want my money back."


@pytest.mark.asyncio
async def test_a_quoted_reply_is_stripped_and_the_original_is_kept(running: EmailHub) -> None:
    raw = fixture_mail("gmail-reply.eml")
    outcome = await smtp_send(running.smtp_port, raw, mail_from="ada.lovelace@gmail.example")
    assert outcome.data == 250, outcome
    [message] = await timeline(running.hub, "ada.lovelace@gmail.example")
    assert message.body == "Thanks, the tracking link works now. The parcel is in Lyon."
    [original] = [a for a in message.attachments if a["kind"] == "original"]
    kept = await stored_file(running.hub, original)
    assert b"Your order #1234 left our warehouse today." in kept
    assert original["size"] == len(kept)


@pytest.mark.asyncio
async def test_attachments_and_inline_images_are_stored_with_metadata(running: EmailHub) -> None:
    raw = mail(
        "The zip is broken, photo attached.",
        attachments=((b"\x89PNG photo", "zip.png", "image/png"), (b"%PDF invoice", "invoice.pdf", "application/pdf")),
    )
    assert (await smtp_send(running.smtp_port, raw)).data == 250
    [message] = await timeline(running.hub)
    kinds = [(a["kind"], a["filename"], a["content_type"], a["size"]) for a in message.attachments]
    assert kinds == [
        ("original", "original.eml", "message/rfc822", len(raw.replace(b"\n", b"\r\n"))),  # as SMTP carried it
        ("attachment", "zip.png", "image/png", len(b"\x89PNG photo")),
        ("attachment", "invoice.pdf", "application/pdf", 12),
    ]


@pytest.mark.asyncio
async def test_a_file_beyond_the_attachment_cap_is_left_out_and_counted(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path, email_max_bytes=64 * 1024, attachment_max_bytes=20_000) as running:
        await _send_a_file_too_large(running)


async def _send_a_file_too_large(running: EmailHub) -> None:
    raw = mail(
        "See the video.", attachments=((b"v" * 25_000, "video.mp4", "video/mp4"), (b"ok", "a.txt", "text/plain"))
    )
    assert (await smtp_send(running.smtp_port, raw)).data == 250
    [message] = await timeline(running.hub)
    assert message.body == "See the video."
    assert [a["filename"] for a in message.attachments] == ["a.txt"]
    assert message.meta["email"]["files_not_kept"] == 1
    assert message.meta["email"]["original_not_kept"] == "too large"


@pytest.mark.asyncio
async def test_an_auto_reply_and_a_newsletter_are_stored_as_automated(running: EmailHub) -> None:
    assert (
        await smtp_send(running.smtp_port, fixture_mail("out-of-office.eml"), mail_from="eve@contoso.example")
    ).data == 250
    [ooo] = await timeline(running.hub, "eve@contoso.example")
    assert ooo.meta["email"]["automated"] == "Auto-Submitted: auto-replied"
    newsletter = fixture_mail("newsletter-html-only.eml")
    assert (await smtp_send(running.smtp_port, newsletter, mail_from="<>")).data == 250
    [news] = await timeline(running.hub, "news@outdoor-weekly.example")
    assert news.meta["email"]["automated"] == "Precedence: bulk"


@pytest.mark.asyncio
async def test_a_runaway_sender_is_marked_automated(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path, email_sender_rate=3) as running:
        for n in range(5):
            raw = mail(f"Thank you for your message ({n})", message_id=f"<loop{n}@bot.example>")
            assert (await smtp_send(running.smtp_port, raw)).data == 250
        messages = await timeline(running.hub)
        assert ["automated" in m.meta["email"] for m in messages] == [False, False, False, True, True]
        assert messages[3].meta["email"]["automated"] == "more than 3 messages from this sender within an hour"


@pytest.mark.asyncio
async def test_mail_that_cannot_be_taken_in_is_refused_with_a_reason(running: EmailHub) -> None:
    no_sender = b"To: help@support.example.test\r\nSubject: hi\r\n\r\nHello\r\n"
    outcome = await smtp_send(running.smtp_port, no_sender, mail_from="<>")
    assert outcome.data == 554
    assert outcome.data_message == "5.6.0 the message has no sender address (From)"
    bad_sender = mail(sender="Ada <ada@nodomain>")
    outcome = await smtp_send(running.smtp_port, bad_sender, mail_from="ada@nodomain")
    assert outcome.data == 554 and "sender address is not valid" in outcome.data_message
    assert await message_count(running) == 0


@pytest.mark.asyncio
async def test_a_hub_failure_is_451_and_the_retry_is_stored(
    running: EmailHub, caplog: pytest.LogCaptureFixture
) -> None:
    service = running.hub.service
    real_ingest = service.ingest
    failures = [RuntimeError("database is locked; parameters: ('Hello secret words', 'ada@customer.example.org')")]

    async def flaky_ingest(message: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_ingest(message)

    service.ingest = flaky_ingest  # type: ignore[method-assign]  # the channel calls its host's
    raw = mail("Hello secret words", message_id="<flaky@customer.example.org>")
    with caplog.at_level(logging.DEBUG, logger="channels.email"):
        first = await smtp_send(running.smtp_port, raw)
    assert first.data == 451 and first.data_message == "4.3.0 Temporary failure, please try again later"
    assert await message_count(running) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert warnings and not any("secret words" in w or CUSTOMER in w for w in warnings)
    assert (await smtp_send(running.smtp_port, raw)).data == 250
    assert [m.body for m in await timeline(running.hub)] == ["Hello secret words"]


@pytest.mark.asyncio
async def test_no_address_or_body_reaches_the_log(running: EmailHub, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        await smtp_send(running.smtp_port, mail("Private words", message_id="<log@customer.example.org>"))
        await smtp_send(running.smtp_port, mail(), rcpt_to=("someone@elsewhere.example",))
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("channels", "mail.log")))
    assert "Private words" not in text and CUSTOMER not in text and "elsewhere.example" not in text


# --- replies and bounces -------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_an_agents_reply_reaches_the_relay_threaded_and_a_customer_answer_joins(running: EmailHub) -> None:
    raw = mail("Where is my parcel?", message_id="<q1@customer.example.org>")
    assert (await smtp_send(running.smtp_port, raw)).data == 250
    [question] = await timeline(running.hub)
    conversation_id = question.conversation_id
    reply = await running.hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        role="agent",
        json={"text": "It left today: https://track.example.test/1234"},
        headers={"Idempotency-Key": "agent-reply-1"},
        expect=201,
    )
    [sent] = await running.sink.wait_for(1)
    message = sent.message
    domain = SUPPORT.split("@")[1]
    assert message["Message-ID"] == f"<agent-reply-1@{domain}>"
    assert message["Subject"] == "Re: Where is my order?"
    assert message["From"] == f"Northwind Support <{SUPPORT}>"
    assert message["To"] == CUSTOMER
    assert sent.mail_from == SUPPORT and sent.rcpt_tos == (CUSTOMER,)
    reply_to = message["Reply-To"].addresses[0].addr_spec
    assert SupportAddresses(SUPPORT, REPLY_SECRET.encode()).conversation_hint([reply_to]) == conversation_id
    assert "Auto-Submitted" not in message  # an agent wrote it
    assert sent.text().strip() == "It left today: https://track.example.test/1234"
    assert '<a href="https://track.example.test/1234">' in sent.html()

    async def delivered() -> bool:
        stored = await running.hub.service.get_message(reply["id"])
        return stored.delivery_status.value == "sent"  # the relay has it; a bounce may follow

    await wait_for(delivered)
    # The customer answers the reply: it joins the same conversation.
    answer = mail(
        "Thanks, got it!",
        to=reply_to,
        subject="Re: Where is my order?",
        message_id="<a1@customer.example.org>",
        headers={
            "In-Reply-To": message["Message-ID"],
            "References": f"<q1@customer.example.org> {message['Message-ID']}",
        },
    )
    assert (await smtp_send(running.smtp_port, answer, rcpt_to=(reply_to,))).data == 250
    messages = await timeline(running.hub)
    assert [m.body for m in messages if m.direction.value == "inbound"] == ["Where is my parcel?", "Thanks, got it!"]
    assert {m.conversation_id for m in messages} == {conversation_id}


@pytest.mark.asyncio
async def test_a_bounce_marks_the_reply_failed_and_stores_no_message(running: EmailHub) -> None:
    assert (await smtp_send(running.smtp_port, mail("Hi", message_id="<b1@customer.example.org>"))).data == 250
    [question] = await timeline(running.hub)
    reply = await running.hub.api(
        "POST",
        f"/api/v1/conversations/{question.conversation_id}/messages",
        role="agent",
        json={"text": "We will check."},
        expect=201,
    )
    [sent] = await running.sink.wait_for(1)

    async def status() -> str:
        return str((await running.hub.service.get_message(reply["id"])).delivery_status.value)

    await wait_for(lambda: _equals(status(), "sent"))
    before = await message_count(running)
    dsn = fixture_mail("dsn-bounce.eml").replace(b"<{{message_id}}>", sent.message["Message-ID"].encode())
    outcome = await smtp_send(running.smtp_port, dsn, mail_from="<>")
    assert outcome.data == 250 and "delivery report" in outcome.data_message
    assert await status() == "failed"
    stored = await running.hub.service.get_message(reply["id"])
    assert stored.delivery_error is not None and "5.1.1" in stored.delivery_error
    assert await message_count(running) == before + 1  # the hub's note of the failure; no customer message
    assert [m.body for m in await timeline(running.hub, "mailer-daemon@relay.support.example.test")] == []


async def _equals(value: Any, expected: str) -> bool:
    return bool(await value == expected)


# --- lifecycle -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_shutdown_closes_open_sessions_and_leaves_no_task(sqlite_url: str, tmp_path: Path) -> None:
    tasks_before = asyncio.all_tasks()
    async with email_hub(sqlite_url, tmp_path) as running:
        idle = aiosmtplib.SMTP(hostname="127.0.0.1", port=running.smtp_port, start_tls=False, timeout=15)
        await idle.connect()
        await idle.ehlo()
        assert len(running.channel.smtp.sessions) == 1
    await asyncio.sleep(0.05)
    leaked = [t for t in asyncio.all_tasks() - tasks_before if not t.done() and t is not asyncio.current_task()]
    assert leaked == []
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await idle.noop()
    idle.close()


@pytest.mark.asyncio
async def test_port_zero_means_no_smtp_server(sqlite_url: str, tmp_path: Path) -> None:
    async with email_hub(sqlite_url, tmp_path, email_smtp_port=0) as running:
        assert running.channel.smtp is None


@pytest.mark.asyncio
async def test_mangled_mail_over_smtp_gets_250_or_a_reason_never_an_error(running: EmailHub) -> None:
    """The corpus, cut short and with bytes flipped or inserted (a fixed seed),
    over the wire: every mail is stored (250) or refused with its reason
    (554); never a 451/500 (a failure inside the hub) or aiosmtpd's
    exception text."""
    import random

    rng = random.Random(15)
    corpus = [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml")) if path.stat().st_size]
    codes = []
    for n in range(60):
        raw = bytearray(rng.choice(corpus).replace(b"{{", b"").replace(b"}}", b""))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw)) if raw else 0
            action = rng.choice(["cut", "flip", "insert"])
            if action == "cut":
                del raw[at:]
            elif action == "flip" and raw:
                raw[at] ^= 0xFF
            else:
                raw[at:at] = rng.randbytes(rng.randint(1, 16))
        outcome = await smtp_send(running.smtp_port, bytes(raw) + f"\r\nX-N: {n}\r\n".encode())
        assert outcome.data in (250, 554), (n, outcome)
        assert "Error" not in outcome.data_message and "Traceback" not in outcome.data_message
        codes.append(outcome.data)
    assert 250 in codes
