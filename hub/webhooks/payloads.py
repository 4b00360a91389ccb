"""The ``data`` of each webhook event, read in the event's own transaction.

Ids and the fields an integrator acts on, as plain JSON; never a secret, a
token or an internal reference (Slack message ids, the bot's decisions).
What the rows hold at the event is what goes: a later change is a later event.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.conversations import transactions as conversations_tx
from hub.errors import NotFound
from hub.storage.driver import DriverStatement
from hub.storage.schema import contacts, conversations, csat_surveys, identities, messages, tickets


def plain(value: Any) -> Any:
    """``value`` as JSON: datetimes in ISO 8601, enums by value."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def conversation(conn: Connection, conversation_id: int) -> dict[str, Any]:
    found = conversations_tx.get_conversation(conn, conversation_id)
    return {name: plain(getattr(found, name)) for name in ("id", *CONVERSATION_FIELDS)}


def ticket(conn: Connection, ticket_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(tickets).where(tickets.c.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"ticket {ticket_id} not found")
    fields = (
        "id",
        "conversation_id",
        "contact_id",
        "status",
        "priority",
        "team",
        "assignee_id",
        "source",
        "reason",
        "created_at",
        "resolved_at",
        "first_response_at",
        "first_response_due",
        "resolution_due",
    )
    return {name: plain(getattr(row, name)) for name in fields}


def survey(conn: Connection, survey_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(csat_surveys).where(csat_surveys.c.id == survey_id)).first()
    if row is None:
        return None
    fields = ("id", "conversation_id", "ticket_id", "channel", "rating", "comment", "sent_at", "answered_at")
    return {name: plain(getattr(row, name)) for name in fields}


def _first_address(kind: str) -> sa.ScalarSelect[Any]:
    return (
        sa.select(identities.c.address)
        .where(identities.c.contact_id == contacts.c.id, identities.c.channel == kind)
        .order_by(identities.c.id)
        .limit(1)
        .scalar_subquery()
    )


MESSAGE_FIELDS = (
    "id",
    "conversation_id",
    "contact_id",
    "channel",
    "direction",
    "author_kind",
    "author_id",
    "body",
    "attachments",
    "delivery_status",
    "created_at",
)
CONVERSATION_FIELDS = (
    "contact_id",
    "channel",
    "status",
    "priority",
    "handler",
    "assignee_id",
    "subject",
    "created_at",
    "updated_at",
    "last_message_at",
    "resolved_at",
)
# The message, its conversation and its contact in one statement: it runs in
# the ingest transaction of every message while an endpoint takes message.created.
_MESSAGE_CREATED = DriverStatement(
    sa.select(
        *(messages.c[name] for name in MESSAGE_FIELDS),
        *(conversations.c[name].label(f"conversation_{name}") for name in CONVERSATION_FIELDS),
        contacts.c.name.label("contact_name"),
        _first_address("email").label("contact_email"),
        _first_address("phone").label("contact_phone"),
    )
    .select_from(messages)
    .join(conversations, conversations.c.id == messages.c.conversation_id)
    .join(contacts, contacts.c.id == messages.c.contact_id)
    .where(messages.c.id == sa.bindparam("message_id"))
)


def message_created(conn: Connection, message_id: int) -> dict[str, Any]:
    row = _MESSAGE_CREATED.first(conn, {"message_id": message_id})
    if row is None:
        raise NotFound(f"message {message_id} not found")
    found = {name: plain(getattr(row, name)) for name in MESSAGE_FIELDS}
    found["attachments"] = [
        {key: item[key] for key in ("id", "filename", "content_type", "size") if key in item}
        for item in row.attachments or []
        if isinstance(item, dict)
    ]
    conversation: dict[str, Any] = {"id": row.conversation_id}
    conversation.update({name: plain(getattr(row, f"conversation_{name}")) for name in CONVERSATION_FIELDS})
    return {
        "message": found,
        "conversation": conversation,
        "contact": {
            "id": row.contact_id,
            "name": row.contact_name,
            "email": row.contact_email,
            "phone": row.contact_phone,
        },
    }
