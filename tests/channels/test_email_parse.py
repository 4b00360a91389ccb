"""Reading mail (channels/email/parse.py and its helpers), without a hub.

The corpus under ``tests/fixtures/email/`` is shaped after what Gmail,
Outlook and Apple Mail send (replies with quotes and signatures), a
forwarded mail, a calendar invitation, an HTML-only newsletter, a Postfix
bounce (DSN) and an Exchange out-of-office reply; each is read here the way
an agent should see it. The property-based test of ``parse_email`` is in
``test_email_fuzz.py``.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from channels.email.addresses import SupportAddresses, split_address
from channels.email.bounce import Bounce
from channels.email.loops import SenderRate, automated_reason
from channels.email.parse import ParsedMail, normalise_message_id, parse_email
from channels.email.text import MAX_TIMELINE_CHARS, TRUNCATED_NOTE
from hub.errors import ConfigError, InvalidInput
from tests.channels.email_support import BILLING, CUSTOMER, REPLY_SECRET, SUPPORT, fixture_mail, mail

ADDRESSES = SupportAddresses(f"{SUPPORT},{BILLING}", REPLY_SECRET.encode())


def parsed(raw: bytes, **kwargs: object) -> ParsedMail:
    result = parse_email(raw, addresses=ADDRESSES, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, ParsedMail), result
    return result


# --- the corpus ---------------------------------------------------------------------------
def test_gmail_reply_loses_its_quote_and_signature_and_keeps_its_thread() -> None:
    mail_ = parsed(fixture_mail("gmail-reply.eml")).message
    assert mail_.text == "Thanks, the tracking link works now. The parcel is in Lyon."
    assert mail_.sender == "ada.lovelace@gmail.example"
    assert mail_.sender_name == "Ada Lovelace"
    assert mail_.subject == "Re: Where is my order?"
    assert mail_.external_id == "<CAJk9v2x8Q=abc+def_123@mail.gmail.example>"
    # In-Reply-To first, then References nearest first.
    assert mail_.references == ("<outbox-7@support.example.test>", "<c41.a1b2c3@support.example.test>")
    assert mail_.conversation_hint is None  # the token in its To is not one the hub made
    assert not mail_.automated


def test_outlook_reply_in_windows_1252_loses_the_quoted_original() -> None:
    mail_ = parsed(fixture_mail("outlook-reply.eml")).message
    assert mail_.text == (
        "Hello,\n\nThe invoice still shows 3 items, we only ordered 2. Could you send a corrected one? Danke schön."
    )
    assert mail_.sender == "bob.martin@contoso.example"  # lower-cased
    assert mail_.subject == "RE: Invoice 2025-0042 is wrong"
    assert mail_.references == ("<outbox-12@support.example.test>",)


def test_apple_mail_reply_decodes_its_name_and_subject_and_drops_sent_from_my_iphone() -> None:
    mail_ = parsed(fixture_mail("apple-mail-reply.eml")).message
    assert mail_.text == "Le colis est reparti ce matin, merci !"
    assert mail_.sender_name == "Zoë Dupré"
    assert mail_.subject == "Re: Retour d’une commande"
    assert mail_.external_id == "<5D1E2F3A-9B8C-4D7E-A6F5-0123456789AB@icloud.example>"


def test_a_forwarded_mail_keeps_what_was_forwarded() -> None:
    mail_ = parsed(fixture_mail("forwarded.eml")).message
    assert mail_.text.startswith("This never arrived, can you check?")
    assert "parcel number\nNW-778899." in mail_.text
    assert "From: Northwind Shop" in mail_.text


def test_a_calendar_invitation_keeps_its_words_and_its_invitation_files() -> None:
    result = parsed(fixture_mail("calendar-invite.eml"))
    assert result.message.text.startswith("You have been invited to the following event.")
    assert "https://meet.example/abc-defg-hij" in result.message.text
    kinds = [(file.filename, file.content_type) for file in result.files]
    assert kinds == [(None, "text/calendar"), ("invite.ics", "application/ics")]
    assert b"BEGIN:VEVENT" in result.files[0].data
    assert result.files[1].data.startswith(b"BEGIN:VCALENDAR")


def test_an_html_only_newsletter_is_readable_text_and_automated() -> None:
    mail_ = parsed(fixture_mail("newsletter-html-only.eml")).message
    assert mail_.text == (
        "The best trails of March\n\nCafé stops on the Gorge du Verdon route, and more.\n\n"
        "[Read online](https://outdoor-weekly.example/read/8812)"
    )
    assert "track()" not in mail_.text and "color:red" not in mail_.text
    assert mail_.subject == "🏕 The best trails of March"
    assert mail_.automated
    assert mail_.metadata["email"]["automated"] == "Precedence: bulk"


def test_a_dsn_bounce_is_a_failed_delivery_report_for_the_hubs_message() -> None:
    raw = fixture_mail("dsn-bounce.eml").replace(b"{{message_id}}", b"outbox-9@support.example.test")
    result = parse_email(raw, addresses=ADDRESSES)
    assert isinstance(result, Bounce)
    report = result.report("email")
    assert report is not None
    assert report.provider_id == "<outbox-9@support.example.test>"
    assert report.status == "failed"
    assert report.error_code == "5.1.1"
    assert report.error_message is not None
    assert report.error_message.startswith("550 5.1.1 <nobody@customer.example.org>: Recipient address rejected")
    assert len(report.error_message) <= 300


def test_an_out_of_office_reply_is_automated() -> None:
    mail_ = parsed(fixture_mail("out-of-office.eml")).message
    assert mail_.automated
    assert mail_.metadata["email"]["automated"] == "Auto-Submitted: auto-replied"
    assert mail_.text.startswith("I am out of the office until 10 March")


# --- identity, threading and dedup ----------------------------------------------------------------
def test_message_id_is_normalised_and_missing_ones_hash_the_bytes() -> None:
    assert normalise_message_id("  <abc@example.org>  ") == "<abc@example.org>"
    assert normalise_message_id("abc@example.org") == "<abc@example.org>"
    assert normalise_message_id("not an id") is None
    raw = mail(message_id="bare-id@customer.example.org")
    assert parsed(raw).message.external_id == "<bare-id@customer.example.org>"
    without = b"From: ada@customer.example.org\r\nTo: help@support.example.test\r\n\r\nHello\r\n"
    first, again = parsed(without).message, parsed(without).message
    assert first.external_id is not None and first.external_id.startswith("sha256:")
    assert first.external_id == again.external_id  # a retried delivery is stored once
    assert parsed(without + b"more").message.external_id != first.external_id


def test_references_are_in_reply_to_then_references_nearest_first_each_once() -> None:
    raw = mail(
        headers={
            "In-Reply-To": "<c@x.example>",
            "References": "<a@x.example> <b@x.example> <c@x.example>",
        }
    )
    assert parsed(raw).message.references == ("<c@x.example>", "<b@x.example>", "<a@x.example>")


def test_a_reply_address_with_a_genuine_token_names_its_conversation() -> None:
    reply_to = ADDRESSES.reply_address(42)
    assert reply_to.startswith("help+c42.") and reply_to.endswith("@support.example.test")
    assert parsed(mail(to=reply_to)).message.conversation_hint == 42
    # From the envelope too (a Bcc, or a forwarding rule that rewrote To).
    assert parsed(mail(), envelope_recipients=[reply_to.upper()]).message.conversation_hint == 42
    # Cc and Delivered-To count; an altered token or another id names nothing.
    assert parsed(mail(headers={"Cc": reply_to})).message.conversation_hint == 42
    assert parsed(mail(headers={"Delivered-To": reply_to})).message.conversation_hint == 42
    local, tag, domain = split_address(reply_to)  # type: ignore[misc]
    forged = f"{local}+c43.{tag.split('.')[1]}@{domain}"
    altered = reply_to.replace(".", ".0", 1)[:-1]
    assert parsed(mail(to=forged)).message.conversation_hint is None
    assert parsed(mail(to=altered)).message.conversation_hint is None
    other_secret = SupportAddresses(SUPPORT, b"another secret").reply_address(42)
    assert parsed(mail(to=other_secret)).message.conversation_hint is None


def test_support_addresses_accept_their_tags_and_nothing_else() -> None:
    assert ADDRESSES.accepts("help@support.example.test")
    assert ADDRESSES.accepts("HELP+orders@Support.Example.Test")
    assert ADDRESSES.accepts("<billing@support.example.test>")
    assert not ADDRESSES.accepts("help@elsewhere.example")
    assert not ADDRESSES.accepts("helpdesk@support.example.test")
    assert not ADDRESSES.accepts("not an address")
    with pytest.raises(ConfigError, match="HUB_EMAIL_ADDRESSES"):
        SupportAddresses("help@", b"x")
    with pytest.raises(ConfigError, match="without a \\+tag"):
        SupportAddresses("help+x@support.example.test", b"x")


def test_sender_comes_from_from_else_the_envelope_and_must_be_an_address() -> None:
    assert parsed(mail(sender="ADA@Customer.Example.ORG")).message.sender == CUSTOMER
    no_from = b"To: help@support.example.test\r\nSubject: hi\r\n\r\nHello\r\n"
    assert parsed(no_from, envelope_sender=CUSTOMER).message.sender == CUSTOMER
    with pytest.raises(InvalidInput, match="no sender address"):
        parse_email(no_from, addresses=ADDRESSES)
    with pytest.raises(InvalidInput, match="sender address is not valid"):
        parse_email(mail(sender="someone@nodomain"), addresses=ADDRESSES)
    with pytest.raises(InvalidInput, match="empty"):
        parse_email(b"\r\n\r\n", addresses=ADDRESSES)


# --- body text and files -----------------------------------------------------------------------
def test_plain_text_is_preferred_to_html_and_an_empty_plain_part_is_not() -> None:
    raw = mail("Plain words", html="<p>HTML words</p>")
    assert parsed(raw).message.text == "Plain words"
    message = EmailMessage()
    message["From"] = CUSTOMER
    message["To"] = SUPPORT
    message.set_content("  \n")
    message.add_alternative("<p>Only the <b>HTML</b> has words</p>", subtype="html")
    assert parsed(message.as_bytes()).message.text == "Only the HTML has words"


@pytest.mark.parametrize(
    ("charset", "body", "expected"),
    [
        ("iso-8859-1", "Caf\xe9".encode("latin-1"), "Café"),
        ("utf-8", b"Caf\xe9 (latin-1 declared as utf-8)", "Café (latin-1 declared as utf-8)"),
        ("x-no-such-charset", "Café".encode(), "Café"),
        ("unknown-8bit", b"Caf\xe9", "Café"),
        ("koi8-r", "Привет".encode("koi8-r"), "Привет"),
    ],
)
def test_any_charset_even_a_wrong_one_gives_readable_text(charset: str, body: bytes, expected: str) -> None:
    raw = (
        b"From: ada@customer.example.org\r\nTo: help@support.example.test\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
    )
    text = parsed(raw).message.text
    assert text == expected or (charset == "utf-8" and "Caf" in text and "latin-1 declared" in text)


def test_attachments_and_inline_images_are_files_with_their_names() -> None:
    raw = mail(
        "See the photo and the invoice.",
        attachments=((b"%PDF-1.4 fake", "invoice.pdf", "application/pdf"),),
    )
    message = EmailMessage()
    message["From"] = CUSTOMER
    message["To"] = SUPPORT
    message.set_content("Broken zip, see picture")
    message.add_alternative('<p>Broken zip <img src="cid:photo1@ada"></p>', subtype="html")
    html_part = message.get_payload()[1]  # type: ignore[index]
    html_part.add_related(
        b"\x89PNG fake", maintype="image", subtype="png", cid="<photo1@ada>", filename="zip.png", disposition="inline"
    )
    files = parsed(raw).files
    assert [(f.filename, f.content_type, f.data, f.inline) for f in files] == [
        ("invoice.pdf", "application/pdf", b"%PDF-1.4 fake", False)
    ]
    inline = parsed(message.as_bytes()).files
    assert [(f.filename, f.content_type, f.inline, f.content_id) for f in inline] == [
        ("zip.png", "image/png", True, "<photo1@ada>")
    ]


def test_a_mail_without_words_shows_its_files_or_its_subject() -> None:
    only_file = mail("", attachments=((b"data", "photo.jpg", "image/jpeg"),))
    assert parsed(only_file).message.text == "(no text; attached: photo.jpg)"
    assert parsed(mail("", subject="Call me back")).message.text == "(no text) Call me back"


def test_a_long_mail_is_cut_with_a_pointer_to_the_original() -> None:
    text = parsed(mail("word " * 20_000)).message.text
    assert len(text) <= MAX_TIMELINE_CHARS
    assert text.endswith(TRUNCATED_NOTE)


def test_an_attached_mail_is_one_file() -> None:
    inner = mail("The original question", subject="Original")
    message = EmailMessage()
    message["From"] = CUSTOMER
    message["To"] = SUPPORT
    message["Subject"] = "Fwd: Original"
    message.set_content("Forwarding as attachment")
    message.add_attachment(
        inner, maintype="message", subtype="rfc822", filename="original.eml"
    )  # base64, as some send it
    result = parsed(message.as_bytes())
    assert result.message.text == "Forwarding as attachment"
    assert [f.content_type for f in result.files] == ["message/rfc822"]
    assert b"The original question" in result.files[0].data
    proper = EmailMessage()
    proper["From"] = CUSTOMER
    proper["To"] = SUPPORT
    proper.set_content("Forwarding as attachment")
    proper.add_attachment(BytesParser(policy=policy.default).parsebytes(inner))  # message/rfc822, 7bit
    files = parsed(proper.as_bytes()).files
    assert [(f.content_type, f.filename) for f in files] == [("message/rfc822", "forwarded.eml")]
    assert b"The original question" in files[0].data


# --- loops -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "sender", "automated"),
    [
        ({"auto-submitted": "auto-replied"}, CUSTOMER, True),
        ({"auto-submitted": "auto-generated; owner-email=x@y.z"}, CUSTOMER, True),
        ({"auto-submitted": "no"}, CUSTOMER, False),
        ({"precedence": "bulk"}, CUSTOMER, True),
        ({"precedence": "junk"}, CUSTOMER, True),
        ({"precedence": "list"}, CUSTOMER, True),
        ({"precedence": "first-class"}, CUSTOMER, False),
        ({"list-id": "<news.example.org>"}, CUSTOMER, True),
        ({"x-autoreply": "yes"}, CUSTOMER, True),
        ({"x-autorespond": "Out of office"}, CUSTOMER, True),
        ({}, "MAILER-DAEMON@mx.example.org", True),
        ({}, "postmaster@example.org", True),
        ({}, CUSTOMER, False),
    ],
)
def test_machine_written_mail_is_recognised(headers: dict[str, str], sender: str, automated: bool) -> None:
    assert (automated_reason(headers, sender) is not None) is automated


def test_a_null_envelope_sender_means_a_machine_wrote_it() -> None:
    assert parsed(mail(), envelope_sender="").message.automated
    assert not parsed(mail(), envelope_sender=CUSTOMER).message.automated


def test_sender_rate_marks_a_runaway_sender_within_the_hour_only() -> None:
    now = [1000.0]
    rate = SenderRate(3, clock=lambda: now[0])
    assert [rate.exceeded("loop@bot.example") for _ in range(5)] == [False, False, False, True, True]
    assert not rate.exceeded("someone@else.example")
    now[0] += 3600
    assert not rate.exceeded("loop@bot.example")  # an hour later it starts again


def test_sender_rate_stays_bounded() -> None:
    now = [0.0]
    rate = SenderRate(2, clock=lambda: now[0], max_senders=100)
    for n in range(1000):
        rate.exceeded(f"sender-{n}@example.org")
    assert len(rate._seen) <= 100


# --- bounces ---------------------------------------------------------------------------------
def test_a_free_form_mailer_daemon_bounce_quoting_the_message_id_is_a_report() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: help@support.example.test\r\nSubject: failure notice\r\n\r\n"
        b"Hi. This is the qmail-send program. I'm afraid I wasn't able to deliver your message:\r\n\r\n"
        b"<nobody@customer.example.org>:\r\n550 5.2.1 Mailbox disabled for this recipient\r\n\r\n"
        b"--- Below this line is a copy of the message.\r\n\r\n"
        b"Message-ID: <outbox-5@support.example.test>\r\nSubject: Re: hi\r\n"
    )
    result = parse_email(raw, addresses=ADDRESSES)
    assert isinstance(result, Bounce)
    assert (result.provider_id, result.status, result.error_code) == (
        "<outbox-5@support.example.test>",
        "failed",
        "5.2.1",
    )
    assert result.error_message == "550 5.2.1 Mailbox disabled for this recipient"


def test_a_mailer_daemon_mail_about_nothing_the_hub_sent_is_an_automated_message() -> None:
    raw = b"From: MAILER-DAEMON@mx.example.org\r\nTo: help@support.example.test\r\n\r\nYour mailbox is 90% full.\r\n"
    result = parsed(raw)
    assert result.message.automated


def test_a_delayed_dsn_reports_nothing() -> None:
    raw = (
        fixture_mail("dsn-bounce.eml")
        .replace(b"{{message_id}}", b"outbox-9@support.example.test")
        .replace(b"Action: failed", b"Action: delayed")
        .replace(b"Status: 5.1.1", b"Status: 4.4.1")
    )
    result = parse_email(raw, addresses=ADDRESSES)
    assert isinstance(result, Bounce)
    assert result.status == "delayed"
    assert result.report("email") is None
