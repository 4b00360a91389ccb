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

from hub.conversations import contacts as contacts_tx
from hub.conversations import transactions as conversations_tx
from hub.errors import NotFound
from hub.storage.schema import csat_surveys, tickets


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


def contact(conn: Connection, contact_id: int) -> dict[str, Any]:
    found = contacts_tx.get_contact(conn, contact_id)
    return {"id": found.id, "name": found.name, "email": found.email, "phone": found.phone}


def conversation(conn: Connection, conversation_id: int) -> dict[str, Any]:
    found = conversations_tx.get_conversation(conn, conversation_id)
    fields = (
        "id",
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
    return {name: plain(getattr(found, name)) for name in fields}


def message(conn: Connection, message_id: int) -> dict[str, Any]:
    found = conversations_tx.get_message(conn, message_id)
    attachments = [
        {key: item[key] for key in ("id", "filename", "content_type", "size") if key in item}
        for item in found.attachments
        if isinstance(item, dict)
    ]
    return {
        "id": found.id,
        "conversation_id": found.conversation_id,
        "contact_id": found.contact_id,
        "channel": found.channel,
        "direction": plain(found.direction),
        "author_kind": plain(found.author_kind),
        "author_id": found.author_id,
        "body": found.body,
        "attachments": attachments,
        "delivery_status": plain(found.delivery_status),
        "created_at": plain(found.created_at),
    }


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


def message_created(conn: Connection, message_id: int) -> dict[str, Any]:
    found = message(conn, message_id)
    return {
        "message": found,
        "conversation": conversation(conn, found["conversation_id"]),
        "contact": contact(conn, found["contact_id"]),
    }
