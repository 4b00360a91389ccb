"""A Twilio inbound message webhook (form fields) as an ``InboundMessage``.

Fields read: ``From``, ``To``, ``Body``, ``MessageSid`` (the dedup key: Twilio
retries with the same one), ``ProfileName`` (the WhatsApp profile name),
``NumMedia`` with ``MediaUrlN``/``MediaContentTypeN`` (MMS and WhatsApp
media, kept as attachment metadata: the URLs need the account's credentials
to fetch), ``Latitude``/``Longitude`` (a WhatsApp location) and
``OptOutType`` (Advanced Opt-Out's own reading of a keyword).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from channels.base import InboundMessage
from channels.sms.keywords import Keyword, keyword
from channels.sms.numbers import e164, is_whatsapp
from hub.errors import InvalidInput
from hub.inputs import ascii_int

# Twilio forwards at most 10 media items per message.
MAX_MEDIA = 10


@dataclass(frozen=True, slots=True)
class InboundRules:
    """What a channel decides about an inbound message."""

    channel: str  # "sms" or "whatsapp"
    default_region: str
    help_text: str | None  # the answer to HELP; None: no answer


def read_form(body: bytes) -> dict[str, str]:
    """The form strictly: UTF-8 and each field once (InvalidInput otherwise)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"Twilio form is not valid UTF-8 ({err.reason})") from err
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidInput(f"Twilio form field '{name}' is repeated")
        form[name] = value
    return form


def require(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidInput(f"Twilio form field '{name}' is missing")
    return value


def check_sender_channel(form: dict[str, str], rules: InboundRules, *, public_url: str) -> None:
    """A WhatsApp message at the SMS URL (or an SMS at WhatsApp's) means the
    Twilio console points the sender at the wrong webhook: 400, saying which."""
    whatsapp = is_whatsapp(require(form, "From"))
    if whatsapp and rules.channel != "whatsapp":
        raise InvalidInput(
            "a WhatsApp message reached the SMS webhook: set the WhatsApp sender's webhook "
            f"to {public_url}/channels/whatsapp/twilio (and enable the 'whatsapp' channel)"
        )
    if not whatsapp and rules.channel == "whatsapp":
        raise InvalidInput(
            "an SMS reached the WhatsApp webhook: set the number's messaging webhook "
            f"to {public_url}/channels/sms/twilio (and enable the 'sms' channel)"
        )


def media(form: dict[str, str]) -> tuple[dict[str, Any], ...]:
    raw = form.get("NumMedia", "0").strip() or "0"
    count = ascii_int(raw)
    if count is None or count > MAX_MEDIA:
        raise InvalidInput(f"Twilio form field 'NumMedia' must be a number from 0 to {MAX_MEDIA}")
    items = []
    for index in range(count):
        url = form.get(f"MediaUrl{index}", "").strip()
        if not url.startswith(("https://", "http://")):
            raise InvalidInput(f"Twilio form field 'MediaUrl{index}' is missing or not a URL")
        content_type = form.get(f"MediaContentType{index}", "").strip() or "application/octet-stream"
        items.append({"url": url, "content_type": content_type})
    return tuple(items)


def describe(attachments: tuple[dict[str, Any], ...], form: dict[str, str]) -> str:
    """The text of a message without words: what it holds, for the timeline."""
    if attachments:
        return " ".join(f"[{item['content_type']}]" for item in attachments)
    if form.get("Latitude") and form.get("Longitude"):
        return f"[location {form['Latitude']},{form['Longitude']}]"
    return "[empty message]"


def parse_inbound(form: dict[str, str], rules: InboundRules) -> InboundMessage:
    message_sid = require(form, "MessageSid")
    sender = e164(require(form, "From"), rules.default_region, field="From")
    attachments = media(form)
    body = form.get("Body", "")
    text = body if body.strip() else describe(attachments, form)
    found = keyword(body, form.get("OptOutType"))
    consent = found.value if found in (Keyword.OPT_OUT, Keyword.OPT_IN) else None
    # Advanced Opt-Out answers HELP itself (OptOutType set): no second answer.
    auto_reply = rules.help_text if found is Keyword.HELP and not form.get("OptOutType") else None
    metadata: dict[str, Any] = {"provider": "twilio"}
    if form.get("To"):
        metadata["to"] = form["To"].strip()
    return InboundMessage(
        channel=rules.channel,
        sender=sender,
        text=text,
        external_id=message_sid,
        sender_name=form.get("ProfileName", "").strip() or None,
        attachments=attachments,
        metadata=metadata,
        consent=consent,
        auto_reply=auto_reply or None,
    )
