"""A reply as an e-mail: headers that thread it, a text and a simple HTML part.

- ``Message-ID``: ``<{idempotency_key}@{domain of the first support
  address}>`` (a key that is not a plain dot-atom, or longer than
  ``MAX_KEY_CHARS``, is replaced by its hash). The outbox gives a retry the
  same key, so a send repeated after a crash carries the same Message-ID: the
  customer's mail program shows it once, and a bounce finds it.
- ``In-Reply-To``: the conversation's newest reference (the customer's last
  mail); ``References``: the conversation's ids oldest first, at most
  ``MAX_REFERENCES`` (the newest kept; RFC 5322 lets the middle go).
- ``Reply-To``: the conversation's tokenised address
  (``help+c123.<token>@example.com``): the answer comes back to it even when
  the customer's program drops every threading header.
- ``From``: ``HUB_EMAIL_FROM_NAME <first support address>``; subject
  ``Re: <subject>`` (never ``Re: Re:``).
- ``Auto-Submitted: auto-replied`` (RFC 3834) and
  ``X-Auto-Response-Suppress: All`` on what the bot or the hub wrote, so the
  customer's auto-responder stays quiet.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from channels.email.addresses import SupportAddresses

MAX_KEY_CHARS = 40  # the Message-ID stays within the 64 characters a delivery report is matched on
MAX_REFERENCES = 20
_DOT_ATOM = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|antw|vs|ref)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_URL = re.compile(r"\bhttps?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")
# Lines as long as this are folded by the policy; 998 is SMTP's hard limit.
SMTP_POLICY = policy.SMTP.clone(max_line_length=78)


def message_id_for(idempotency_key: str, domain: str) -> str:
    key = idempotency_key
    if len(key) > MAX_KEY_CHARS or not _DOT_ATOM.fullmatch(key):
        key = "h" + hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"<{key}@{domain}>"


def reply_subject(subject: str | None, fallback: str) -> str:
    subject = " ".join((subject or "").split())
    if not subject:
        return fallback
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def references_header(references: Sequence[str]) -> list[str]:
    """The conversation's ids (given newest first) oldest first, the newest ``MAX_REFERENCES``."""
    ids = [ref for ref in dict.fromkeys(references) if ref.startswith("<") and ref.endswith(">")]
    return list(reversed(ids[:MAX_REFERENCES]))


def html_body(text: str) -> str:
    """``text`` as simple HTML: escaped, paragraphs and line breaks kept, links clickable."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        escaped = html.escape(paragraph)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        paragraphs.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        '<body style="font-family: sans-serif; font-size: 14px; line-height: 1.5;">\n'
        + "\n".join(paragraphs)
        + "\n</body></html>\n"
    )


def compose(
    *,
    addresses: SupportAddresses,
    from_name: str,
    to: str,
    text: str,
    subject: str | None,
    fallback_subject: str,
    idempotency_key: str,
    conversation_id: int,
    references: Sequence[str] = (),
    automated: bool = False,
) -> EmailMessage:
    primary = addresses.primary
    message = EmailMessage(policy=SMTP_POLICY)
    message["Message-ID"] = message_id_for(idempotency_key, primary.domain)
    message["Date"] = formatdate(usegmt=True)
    message["From"] = Address(display_name=from_name, username=primary.local, domain=primary.domain)
    message["To"] = to
    message["Reply-To"] = Address(display_name=from_name, addr_spec=addresses.reply_address(conversation_id))
    message["Subject"] = reply_subject(subject, fallback_subject)
    thread = references_header(references)
    if thread:
        message["In-Reply-To"] = thread[-1]
        message["References"] = " ".join(thread)
    if automated:
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
    message.set_content(text.strip() + "\n", cte="quoted-printable")
    message.add_alternative(html_body(text), subtype="html", cte="quoted-printable")
    return message
