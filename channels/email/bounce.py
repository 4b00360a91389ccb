"""Bounces: a mail system's word that a message the hub sent did not arrive.

Two shapes are read:

- a delivery status notification (RFC 3464): ``multipart/report;
  report-type=delivery-status``, whose ``message/delivery-status`` part
  holds per-recipient ``Action``, ``Status`` (``5.1.1``) and
  ``Diagnostic-Code``, followed by the original message or its headers
  (``message/rfc822``, ``text/rfc822-headers``) with its ``Message-ID``;
- the older free-form bounce from a mailer-daemon or postmaster that quotes
  the original message (its ``Message-ID`` somewhere in the text or an
  attachment) and says why in words (a ``5.x.x`` status, an SMTP reply).

The hub's Message-ID (``<key@domain>``, see ``compose``) is what it recorded
as the send's provider id, so the report finds its message. A bounce is
never a message on the timeline: it is a ``DeliveryReport``. ``delayed``
(the mail system still tries) reports nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser

from channels.email.text import part_text
from hub.messages import DeliveryReport

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([45]\d\d)[ -]")
_MESSAGE_ID_HEADER = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]{1,490}>)", re.IGNORECASE | re.MULTILINE)
MAX_DIAGNOSTIC = 300


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a bounce says about one message the hub sent."""

    provider_id: str | None  # the bounced message's Message-ID; None: not found
    status: str  # "failed", "delivered" or "delayed"
    error_code: str | None = None  # the enhanced status code, 5.1.1
    error_message: str | None = None  # the diagnostic, short

    def report(self, channel: str) -> DeliveryReport | None:
        """The delivery report for the hub; None when there is nothing to
        report (no original Message-ID, or the mail system is still trying)."""
        if self.provider_id is None or self.status == "delayed":
            return None
        return DeliveryReport(
            channel=channel,
            provider_id=self.provider_id,
            status=self.status,
            error_code=self.error_code,
            error_message=self.error_message,
        )


def is_report(msg: Message) -> bool:
    try:
        return msg.get_content_type() == "multipart/report" and (
            str(msg.get_param("report-type", "")).lower() == "delivery-status"
        )
    except Exception:
        return False


def read_bounce(msg: Message, *, machine_sender: bool, parts: list[Message]) -> Bounce | None:
    """The bounce ``msg`` is, or None when it is none. ``parts`` are its leaf
    parts (``parse.leaf_parts``); ``machine_sender``: From is a mailer-daemon
    or postmaster (then a free-form bounce is recognised by its text)."""
    if is_report(msg):
        return _from_report(msg, parts)
    if machine_sender:
        return _from_text(parts)
    return None


def _from_report(msg: Message, parts: list[Message]) -> Bounce:
    fields: dict[str, str] = {}
    original_id: str | None = None
    for part in _subparts(msg):
        content_type = part.get_content_type()
        if content_type == "message/delivery-status":
            fields = fields or _recipient_fields(part)
        elif content_type == "message/rfc822":
            original_id = original_id or _embedded_message_id(part)
        elif content_type == "text/rfc822-headers":
            original_id = original_id or _quoted_message_id(part_text(part))
    if original_id is None:  # some systems put the headers in the human-readable part
        original_id = next((mid for mid in (_quoted_message_id(part_text(p)) for p in parts) if mid), None)
    action = fields.get("action", "failed").lower()
    status = {"delivered": "delivered", "relayed": "delivered", "expanded": "delivered", "delayed": "delayed"}.get(
        action, "failed"
    )
    code_match = _STATUS.search(fields.get("status", ""))
    diagnostic = fields.get("diagnostic-code", "")
    if ";" in diagnostic:
        diagnostic = diagnostic.split(";", 1)[1]
    return Bounce(
        provider_id=original_id,
        status=status,
        error_code=code_match.group(1) if code_match else None,
        error_message=_short(diagnostic) or None,
    )


def _from_text(parts: list[Message]) -> Bounce | None:
    texts = [part_text(part) for part in parts if part.get_content_maintype() in ("text", "message")]
    original_id = next((mid for mid in map(_quoted_message_id, texts) if mid), None)
    if original_id is None:
        return None  # a mailer-daemon's mail about nothing the hub can find: an ordinary automated message
    text = "\n".join(texts)
    code = _STATUS.search(text)
    reason = next((line for line in text.splitlines() if _SMTP_REPLY.search(line) or _STATUS.search(line)), "")
    return Bounce(
        provider_id=original_id,
        status="failed",
        error_code=code.group(1) if code and code.group(1)[0] in "45" else None,
        error_message=_short(reason) or "The mail system returned the message.",
    )


def _subparts(msg: Message) -> list[Message]:
    payload = msg.get_payload()
    return [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else []


def _recipient_fields(part: Message) -> dict[str, str]:
    """The first failed recipient's fields (lower-cased names), else the first recipient's."""
    blocks = _subparts(part)
    if not blocks:  # not parsed as blocks: read it as text
        text = part_text(part)[:100_000]
        blocks = [Parser().parsestr(block) for block in re.split(r"\r?\n\r?\n", text) if block.strip()]
    recipients = [
        {name.lower(): str(value) for name, value in block.items()} for block in blocks[1:] or blocks
    ]  # the first block is per-message
    for fields in recipients:
        if fields.get("action", "").lower() == "failed":
            return fields
    return recipients[0] if recipients else {}


def _embedded_message_id(part: Message) -> str | None:
    for inner in _subparts(part):
        value = inner.get("Message-ID")
        if value:
            match = re.search(r"<[^<>\s]{1,490}>", str(value))
            if match:
                return match.group(0)
    return None


def _quoted_message_id(text: str) -> str | None:
    match = _MESSAGE_ID_HEADER.search(text[:200_000])
    return match.group(1) if match else None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DIAGNOSTIC else text[: MAX_DIAGNOSTIC - 1] + "…"
