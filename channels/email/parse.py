"""Reading one raw e-mail: the parsing entry point of every inbound mode.

The stable entry point (SMTP here, IMAP in ``channels.email.imap``)::

    parse_email(raw: bytes, *, addresses: SupportAddresses, channel: str = "email",
                envelope_sender: str | None = None,
                envelope_recipients: Sequence[str] = ()) -> ParsedMail | Bounce

It is pure and synchronous (no I/O: run it in a thread for big mail, as
``intake.take_in`` does) and never raises anything but ``InvalidInput``,
with a reason fit for an SMTP reply, when ``raw`` cannot be read as a
message at all (empty, no sender address). Broken charsets, truncated
multiparts, undecodable transfer encodings and huge headers are read
leniently (``email`` with ``policy=default``, every header read guarded).

- ``Bounce`` (``bounce.read_bounce``): a delivery status notification or a
  mailer-daemon's bounce; no message, a delivery report.
- ``ParsedMail``: ``message`` (an ``InboundMessage`` without attachments
  yet), ``files`` (attachments and inline images to keep) and ``raw`` (the
  original, kept as ``original.eml``). ``intake.take_in`` stores the files
  through ``ChannelHost.store_attachment`` and puts their metadata on the
  message; an IMAP poller calls ``take_in`` too.

The message: ``external_id`` is the Message-ID (``<...>``), or ``sha256:``
of the raw bytes when there is none (a retried delivery is stored once either
way); ``references`` are In-Reply-To, then References nearest first;
``conversation_hint`` comes from a tokenised reply address among the
envelope recipients, To, Cc and Delivered-To; ``sender`` is the From address
(lower-cased; the envelope sender when From has none), ``sender_name`` its
display name; ``automated`` per ``loops.automated_reason``; the text per
``text`` (plain preferred, HTML converted, quotes and signature cut).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

from channels.email import text as body_text
from channels.email.addresses import SupportAddresses
from channels.email.bounce import Bounce, read_bounce
from channels.email.loops import automated_reason, machine_sender
from hub.errors import InvalidInput
from hub.inputs import INBOUND_LIMITS, check_email
from hub.messages import InboundMessage

MAX_PARTS = 200  # leaf parts looked at; the rest stays in the original
MAX_DEPTH = 16  # multipart nesting followed
MAX_FILES = 50
MAX_REFERENCES = 20
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,490})>")
_WHITESPACE = re.compile(r"\s+")
_BODY_TYPES = ("text/plain", "text/html")
# Headers read into ``automated_reason`` (lower-cased).
_LOOP_HEADERS = (
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-auto-response-suppress",
)


@dataclass(frozen=True, slots=True)
class MailFile:
    """An attachment or inline image to keep."""

    data: bytes
    filename: str | None
    content_type: str
    inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedMail:
    message: InboundMessage
    files: tuple[MailFile, ...] = ()
    raw: bytes = b""
    skipped_files: int = 0  # beyond MAX_FILES or MAX_PARTS: only in the original


def parse_email(
    raw: bytes,
    *,
    addresses: SupportAddresses,
    channel: str = "email",
    envelope_sender: str | None = None,
    envelope_recipients: Sequence[str] = (),
) -> ParsedMail | Bounce:
    """``raw`` (an RFC 5322 message) as a customer message or a bounce; see the module docstring."""
    if not raw or not raw.strip():
        raise InvalidInput("the message is empty")
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as err:  # the parser registers defects; this is for the unforeseen
        raise InvalidInput(f"the message cannot be read ({type(err).__name__})") from err
    parts, skipped_parts = leaf_parts(msg)
    from_name, from_address = _from(msg)
    sender_machine = machine_sender(from_address) or envelope_sender == ""
    bounce = _guarded(lambda: read_bounce(msg, machine_sender=sender_machine, parts=parts), None)
    if bounce is not None:
        return bounce
    sender = from_address or (envelope_sender or None)
    if not sender:
        raise InvalidInput("the message has no sender address (From)")
    try:
        sender = check_email(sender, "From")
    except InvalidInput as err:
        raise InvalidInput(f"the sender address is not valid: {err.message.split(': it ', 1)[-1]}") from err
    headers = {name: value for name in _LOOP_HEADERS if (value := header(msg, name))}
    reason = automated_reason(headers, sender) or ("null envelope sender" if envelope_sender == "" else None)
    subject = _one_line(header(msg, "Subject") or "")[: INBOUND_LIMITS["subject"]] or None
    body, files, skipped_files = _content(parts)
    text = body_text.tidy(body_text.latest_reply(body, forward=body_text.is_forward(body, subject)))
    if not text:
        text = _placeholder(files, subject)
    to, cc = _addresses(msg, "To"), _addresses(msg, "Cc")
    recipients = [*envelope_recipients, *to, *cc, *_addresses(msg, "Delivered-To")]
    message_id = normalise_message_id(header(msg, "Message-ID"))
    metadata: dict[str, Any] = {
        "email": {
            key: value
            for key, value in {
                "message_id": message_id,
                "to": to[:20],
                "cc": cc[:20],
                "date": _one_line(header(msg, "Date") or "")[:100] or None,
                "automated": reason,
            }.items()
            if value
        }
    }
    inbound = InboundMessage(
        channel=channel,
        sender=sender,
        text=text,
        external_id=message_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
        sender_name=(from_name[: INBOUND_LIMITS["sender_name"]] or None) if from_name else None,
        subject=subject,
        metadata=metadata,
        references=references_of(msg),
        conversation_hint=addresses.conversation_hint(recipients),
        automated=reason is not None,
    )
    return ParsedMail(
        message=inbound,
        files=tuple(files),
        raw=raw,
        skipped_files=skipped_files + skipped_parts,
    )


# --- headers ------------------------------------------------------------------------
def _guarded(read: Any, default: Any) -> Any:
    try:
        return read()
    except (InvalidInput, MemoryError):
        raise
    except Exception:  # a header or part the email package cannot interpret
        return default


def _sane(value: str) -> str:
    """``value`` with the parser's escaped undecodable bytes read as UTF-8 (or U+FFFD)."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


def header(msg: Message, name: str) -> str | None:
    """The first ``name`` header as text (RFC 2047 decoded), None when absent.
    A value the header classes cannot parse is returned raw."""
    try:
        value = msg.get(name)
        return None if value is None else _sane(str(value))
    except Exception:
        for key, raw in msg.raw_items():
            if key.lower() == name.lower():
                return _sane(str(raw))
        return None


def _one_line(value: str) -> str:
    return _WHITESPACE.sub(" ", value).strip()


def _address_pairs(msg: Message, name: str) -> list[tuple[str, str]]:
    try:
        value = msg.get(name)
        found = getattr(value, "addresses", None)
        if found is not None:
            return [(_sane(a.display_name or ""), _sane(a.addr_spec or "")) for a in found]
    except Exception:
        pass
    raw = header(msg, name)
    return [(_sane(n), _sane(a)) for n, a in _guarded(lambda: getaddresses([raw]), [])] if raw else []


def _addresses(msg: Message, name: str) -> list[str]:
    return [address.lower() for _, address in _address_pairs(msg, name) if "@" in address]


def _from(msg: Message) -> tuple[str, str | None]:
    for display, address in _address_pairs(msg, "From"):
        if "@" in address:
            return _one_line(display), address.strip().lower()
    return "", None


def normalise_message_id(value: str | None) -> str | None:
    """``<id@host>`` from a Message-ID header (brackets added when missing); None when there is none."""
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    if match:
        return f"<{match.group(1)}>"
    bare = value.strip()
    if "@" in bare and not any(c.isspace() or c in "<>" for c in bare) and len(bare) <= 490:
        return f"<{bare}>"
    return None


def references_of(msg: Message) -> tuple[str, ...]:
    """In-Reply-To first, then References nearest first; each once, at most ``MAX_REFERENCES``."""
    found: list[str] = []
    in_reply_to = header(msg, "In-Reply-To") or ""
    references = header(msg, "References") or ""
    for candidate in [*_MESSAGE_ID.findall(in_reply_to)[:1], *reversed(_MESSAGE_ID.findall(references))]:
        message_id = f"<{candidate}>"
        if message_id not in found:
            found.append(message_id)
        if len(found) >= MAX_REFERENCES:
            break
    return tuple(found)


# --- parts --------------------------------------------------------------------------
def leaf_parts(msg: Message) -> tuple[list[Message], int]:
    """The leaf parts of ``msg`` in order (an attached ``message/rfc822`` is
    one leaf), without recursion; and how many were left out (beyond
    ``MAX_PARTS`` or ``MAX_DEPTH``)."""
    leaves: list[Message] = []
    skipped = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list) and _content_type(part) != "message/rfc822":
            if depth >= MAX_DEPTH:
                skipped += len(payload)
                continue
            stack.extend((child, depth + 1) for child in reversed(payload) if isinstance(child, Message))
            continue
        if len(leaves) >= MAX_PARTS:
            skipped += 1
            continue
        leaves.append(part)
    return leaves, skipped


def _content_type(part: Message) -> str:
    return str(_guarded(part.get_content_type, "application/octet-stream"))


def _disposition(part: Message) -> str | None:
    value = _guarded(part.get_content_disposition, None)
    return str(value) if value else None


def _filename(part: Message) -> str | None:
    name = _guarded(part.get_filename, None)
    return _one_line(_sane(str(name)))[:255] or None if name else None


@dataclass(frozen=True, slots=True)
class _Leaf:
    """A leaf part with what is read of its headers, read once (each read parses them)."""

    part: Message
    content_type: str
    disposition: str | None
    filename: str | None

    @property
    def is_body(self) -> bool:
        return self.content_type in _BODY_TYPES and self.disposition != "attachment" and not self.filename


def _content(parts: list[Message]) -> tuple[str, list[MailFile], int]:
    """The body text (plain preferred, else HTML as text) and the files."""
    leaves = [_Leaf(p, _content_type(p), _disposition(p), _filename(p)) for p in parts]
    body = ""
    for wanted in _BODY_TYPES:  # the first part with words (some clients send an empty plain one)
        for leaf in leaves:
            if leaf.is_body and leaf.content_type == wanted:
                candidate = body_text.part_text(leaf.part)
                if wanted == "text/html":
                    candidate = body_text.html_to_text(candidate)
                if candidate.strip():
                    body = candidate
                    break
        if body:
            break
    files: list[MailFile] = []
    skipped = 0
    for leaf in leaves:
        if leaf.is_body:
            continue
        if len(files) >= MAX_FILES:
            skipped += 1
            continue
        files.append(_file(leaf))
    return body, files, skipped


def _file(leaf: _Leaf) -> MailFile:
    part = leaf.part
    if leaf.content_type == "message/rfc822":
        inner = part.get_payload()
        embedded = inner[0] if isinstance(inner, list) and inner else None
        encoded = str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
        if isinstance(embedded, Message):
            data = _guarded(lambda: embedded.as_bytes(policy=policy.default), b"")
            if encoded:  # base64 against RFC 2046, but sent: the parser read the encoded text as a message
                data = _guarded(lambda: base64.b64decode(b"".join(data.split()), validate=False), b"")
        else:
            data = _guarded(lambda: _decoded_text_payload(part), b"")
        name: str | None = leaf.filename or "forwarded.eml"
    else:
        data = body_text.part_bytes(part)
        name = leaf.filename
    content_id = header(part, "Content-ID")
    return MailFile(
        data=data,
        filename=name,
        content_type=leaf.content_type,
        inline=leaf.disposition == "inline" or (content_id is not None and leaf.disposition != "attachment"),
        content_id=normalise_message_id(content_id),
    )


def _decoded_text_payload(part: Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, str):
        if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
            return base64.b64decode(payload.encode("ascii", "ignore"), validate=False)
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _placeholder(files: Sequence[MailFile], subject: str | None) -> str:
    """The timeline text of a mail without words: its files, else its subject."""
    names = [f.filename or f.content_type for f in files][:10]
    if names:
        return "(no text; attached: " + ", ".join(names) + ")"
    return f"(no text) {subject}" if subject else "(empty message)"
