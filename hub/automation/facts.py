"""What a rule's conditions are checked against, read in one transaction.

The live path reads them in the event's own transaction (what was true when
it happened); the dry run reads them for past events from the conversation
as it is now, with the event's own text and channel.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.automation.rules import Facts
from hub.storage.schema import contacts, conversations, tickets
from hub.tickets.queries import customer_text

# Is the team at work at this moment? (None: no business hours configured.)
OpenAt = Callable[[datetime], bool] | None


def read(
    conn: Connection,
    conversation_id: int,
    *,
    at: datetime,
    open_at: OpenAt,
    text: str | None = None,
    channel: str | None = None,
) -> Facts | None:
    """The facts of a conversation (None: it is gone); ``text``: the event's
    message, else the customer's latest."""
    row = conn.execute(
        sa.select(
            conversations.c.channel,
            conversations.c.priority,
            contacts.c.tags,
            contacts.c.attributes,
        )
        .select_from(conversations.join(contacts, contacts.c.id == conversations.c.contact_id))
        .where(conversations.c.id == conversation_id)
    ).first()
    if row is None:
        return None
    ticket = conn.execute(
        sa.select(tickets.c.id, tickets.c.priority, tickets.c.team)
        .where(tickets.c.conversation_id == conversation_id, tickets.c.status == "open")
        .order_by(tickets.c.id.desc())
        .limit(1)
    ).first()
    return Facts(
        conversation_id=conversation_id,
        channel=channel or row.channel,
        text=text if text is not None else next(iter(customer_text(conn, conversation_id, limit=1)), ""),
        contact_tags=tuple(str(tag) for tag in row.tags or ()),
        contact_attributes=dict(row.attributes or {}),
        priority=ticket.priority if ticket is not None else row.priority,
        team=ticket.team if ticket is not None else None,
        business_hours=True if open_at is None else open_at(at),
        ticket_id=ticket.id if ticket is not None else None,
    )
