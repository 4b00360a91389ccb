"""The web chat's promise: a visitor who left is answered by e-mail.

When nobody is on duty the widget tells the visitor that the reply will come
by e-mail (and asks for their address when the hub has none). So an agent's
reply that finds the visitor gone (the web chat delivered it to no open
socket) gets a second delivery on the e-mail channel, in the transaction
that records the first: the same timeline message, sent to the contact's
address with a link back into the chat. Their e-mail reply carries the
conversation's reply token (or answers the copy's Message-ID) and lands in
the same conversation (``hub.conversations.ingest``: threading).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import InvalidInput
from hub.events import utcnow
from hub.inputs import check_email
from hub.jobs.queue import Queue
from hub.storage.schema import contacts, conversations, identities


def email_address(conn: Connection, contact_id: int) -> str | None:
    """The contact's e-mail: a verified identity first, else the address they typed."""
    verified = conn.execute(
        sa.select(identities.c.address)
        .where(identities.c.contact_id == contact_id, identities.c.channel == "email")
        .order_by(identities.c.id)
        .limit(1)
    ).scalar()
    if verified:
        return str(verified)
    attributes = conn.execute(sa.select(contacts.c.attributes).where(contacts.c.id == contact_id)).scalar() or {}
    typed = attributes.get("email_unverified") or attributes.get("email")
    if not isinstance(typed, str):
        return None
    try:
        return check_email(typed)
    except InvalidInput:  # typed, never checked: no address to write to
        return None


def email_copy(
    conn: Connection,
    outbox: Queue[Any],
    message_id: int,
    conversation_id: int,
    payload: dict[str, Any],
    *,
    link: str | None,
) -> int | None:
    """Queue the e-mail delivery of a chat reply; None when the contact has no address."""
    row = conn.execute(
        sa.select(conversations.c.contact_id, conversations.c.subject).where(conversations.c.id == conversation_id)
    ).first()
    if row is None:
        return None
    address = email_address(conn, row.contact_id)
    if address is None:
        return None
    text = str(payload["text"])
    if link:
        text += f"\n\nContinue the conversation in the chat: {link}"
    values = {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "channel": "email",
        "idempotency_key": f"email-copy-{message_id}",
        "payload": {
            **payload,
            "to": address,
            "text": text,
            "subject": row.subject or "Your conversation with our support team",
        },
    }
    # The key is unique: a send recorded twice (never, but) queues one copy.
    return outbox.enqueue(conn, values, utcnow(), dedup=True)
