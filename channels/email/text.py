"""The words of an e-mail as the timeline shows them.

- A part's bytes become text in its declared charset when that works, else
  UTF-8, else the declared charset (or Windows-1252) with replacement
  characters: a wrong or unknown charset never refuses a mail.
- HTML becomes readable text with ``inscriptis`` (links kept as
  ``[words](url)``); when it cannot (pathological markup), tags are dropped.
- Quoted replies and signatures are cut with ``mailparser_reply``'s
  ``EmailReplyParser``: the timeline shows what the customer wrote this time.
  A forwarded mail keeps everything (what was forwarded is the point), and so
  does a reply that is nothing but a quote. The full original stays
  retrievable as ``original.eml``.
- The timeline text is bounded (``MAX_TIMELINE_CHARS``); a longer one ends
  with a note pointing at the original.
"""

from __future__ import annotations

import codecs
import logging
import re
from email.message import Message

from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from mailparser_reply import EmailReplyParser

log = logging.getLogger(__name__)

MAX_TIMELINE_CHARS = 20_000
# What the reply parser and the HTML converter are given at most: their
# regular expressions and trees are not linear on hostile input.
MAX_PARSE_CHARS = 100_000
MAX_HTML_CHARS = 2_000_000
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "da", "sv", "pl", "cs"]
TRUNCATED_NOTE = "\n\n[…] The message is longer; the full text is in the original (original.eml)."

_HTML_CONFIG = ParserConfig(display_links=True)
_REPLIES = EmailReplyParser(languages=REPLY_LANGUAGES)
_FORWARD_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*(?:Forwarded message|Weitergeleitete Nachricht|Message transféré)"
    r"|Begin forwarded message:|Anfang der weitergeleiteten Nachricht:)",
    re.IGNORECASE | re.MULTILINE,
)
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|wg|tr|rv|vs|doorst)\s*:", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]{0,10000}>")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Encodings Python knows under another name, and labels mail software writes
# that are no charset at all.
_CHARSET_ALIASES = {"unknown-8bit": "cp1252", "x-unknown": "cp1252", "ansi_x3.4-1968": "ascii", "8bit": "cp1252"}


def charset_of(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:  # a header the parser cannot read
        return None
    if not charset:
        return None
    charset = _CHARSET_ALIASES.get(charset.lower(), charset.lower())
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        return None
    return charset


def decode_bytes(data: bytes, charset: str | None) -> str:
    """``data`` as text: the declared charset, else UTF-8, else a lenient reading."""
    for candidate in (charset, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    return data.decode(charset or "cp1252", errors="replace")


def part_bytes(part: Message) -> bytes:
    """The decoded payload of a leaf part (base64 and quoted-printable undone
    leniently); empty when there is none."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def part_text(part: Message) -> str:
    return decode_bytes(part_bytes(part), charset_of(part))


def html_to_text(html: str) -> str:
    html = html[:MAX_HTML_CHARS]
    try:
        return str(get_text(html, _HTML_CONFIG))
    except Exception as err:  # lxml on pathological markup (depth, encodings)
        log.debug("HTML not converted (%s); tags dropped instead", type(err).__name__)
        return _TAGS.sub(" ", html)


def is_forward(text: str, subject: str | None) -> bool:
    return bool(_FORWARD_MARKERS.search(text[:MAX_PARSE_CHARS]) or (subject and _FORWARD_SUBJECT.match(subject)))


def latest_reply(text: str, *, forward: bool = False) -> str:
    """What the sender wrote this time: ``text`` without quoted replies and
    the signature; the whole ``text`` for a forward, or when nothing is left."""
    if forward or not text.strip():
        return text
    head = text[:MAX_PARSE_CHARS]
    try:
        replies = _REPLIES.read(head).replies
    except Exception as err:  # the parser's regular expressions on hostile text
        log.debug("reply not separated from its quote (%s)", type(err).__name__)
        return text
    if not replies or replies[0].headers:
        # Nothing before the first quote header: a reply that is all quote.
        return text
    body = replies[0].body.strip()
    return body or text


def tidy(text: str, limit: int = MAX_TIMELINE_CHARS) -> str:
    """Line ends unified, trailing spaces and long blank runs gone, bounded to ``limit``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    if len(text) > limit:
        text = text[: limit - len(TRUNCATED_NOTE)].rstrip() + TRUNCATED_NOTE
    return text
