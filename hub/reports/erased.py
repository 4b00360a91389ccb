"""What the reports keep of an erased contact: counts stay, the person goes.

An erasure deletes a contact's conversations, tickets and messages. So that
last month's volume, response times and SLA figures do not change when
someone exercises their right to erasure, the erasure's own transaction
(``hub.conversations.contacts.erase_contact``) first copies the facts the
reports count into ``report_erased_*``: channel, status, priority, team,
times, directions and authors' kinds, agents' ids, the bot's decision and a
ticket's reason category. Nothing that names or describes the customer:
no contact id, no address, no text, no subject, no reason text. Every
report reads these tables beside the live ones (``hub.reports.sql.SOURCES``).

The bot report's facts per conversation (``report_bot_conversations``, kept
by triggers) stay as they are, detached from the conversation's id, which
SQLite may give to the next conversation once this one is deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.models import MessageKind
from hub.reports.bot import reason_key
from hub.reports.sql import LIVE
from hub.storage import insert_ignore
from hub.storage.schema import (
    conversations,
    messages,
    report_bot_conversations,
    report_erased_conversations,
    report_erased_messages,
    report_erased_tickets,
    tickets,
)

_TICKET_COLUMNS = (
    "id",
    "conversation_id",
    "status",
    "priority",
    "assignee_id",
    "team",
    "created_at",
    "resolved_at",
    "first_response_at",
    "first_response_due",
    "resolution_due",
    "first_response_breached_at",
    "resolution_breached_at",
    "sla_paused_at",
)


def keep(conn: Connection, contact_id: int) -> None:
    """Copy the report facts of ``contact_id``'s rows, in the erasure's transaction
    (called before each of its passes; a row already kept is not kept twice)."""
    conversation_ids = sa.select(conversations.c.id).where(conversations.c.contact_id == contact_id)
    conn.execute(
        sa.update(report_bot_conversations)
        .where(report_bot_conversations.c.conversation_id.in_(conversation_ids))
        .values(conversation_id=None)
    )
    c = conversations
    conn.execute(
        insert_ignore(conn, report_erased_conversations)
        .from_select(
            ["id", "channel", "status", "priority", "created_at", "resolved_at"],
            sa.select(c.c.id, c.c.channel, c.c.status, c.c.priority, c.c.created_at, c.c.resolved_at).where(
                c.c.contact_id == contact_id
            ),
        )
        .on_conflict_do_nothing()
    )
    kept = [
        {
            **{name: getattr(row, name) for name in _TICKET_COLUMNS},
            "source": row.source,
            "reason": reason_key(row.source, row.reason),
        }
        for row in conn.execute(sa.select(tickets).where(tickets.c.conversation_id.in_(conversation_ids)))
    ]
    if kept:
        conn.execute(insert_ignore(conn, report_erased_tickets).on_conflict_do_nothing(), kept)
    m = messages
    conn.execute(
        insert_ignore(conn, report_erased_messages)
        .from_select(
            [
                "id",
                "conversation_id",
                "channel",
                "direction",
                "kind",
                "author_kind",
                "author_id",
                "decision",
                "in_reply_to",
                "created_at",
            ],
            sa.select(
                m.c.id,
                m.c.conversation_id,
                m.c.channel,
                m.c.direction,
                m.c.kind,
                m.c.author_kind,
                m.c.author_id,
                sa.func.substr(LIVE.decision, 1, 32),
                LIVE.in_reply_to,
                m.c.created_at,
            ).where(m.c.contact_id == contact_id, m.c.kind.in_((MessageKind.MESSAGE.value, MessageKind.NOTE.value))),
        )
        .on_conflict_do_nothing()
    )
