"""The desk's storage: handled Slack event ids, ticket cards, Slack notes,
and the snapshot a ticket card is drawn from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub import csat
from hub.conversations import consent
from hub.conversations import contacts as contacts_tx
from hub.conversations import transactions as conversations_tx
from hub.events import utcnow
from hub.models import Contact, Conversation, Message, MessageKind
from hub.slack.jobs import enqueue_erase
from hub.storage import insert_ignore, rows
from hub.storage.schema import messages, slack_events, tickets, users
from hub.tickets import queries as tickets_queries

if TYPE_CHECKING:
    from hub.tickets.model import Ticket

# Replies and notes written from Slack carry this in their meta, so the mirror
# never echoes them back into the thread they came from (on any instance).
SOURCE = "slack"


def claim_event(conn: Connection, event_id: str) -> bool:
    done = conn.execute(
        insert_ignore(conn, slack_events).values(event_id=event_id, received_at=utcnow()).on_conflict_do_nothing()
    )
    return done.rowcount == 1


def release_event(conn: Connection, event_id: str) -> None:
    conn.execute(sa.delete(slack_events).where(slack_events.c.event_id == event_id))


def forget_events(conn: Connection, older_than: timedelta) -> int:
    return conn.execute(sa.delete(slack_events).where(slack_events.c.received_at < utcnow() - older_than)).rowcount


def store_card(conn: Connection, ticket_id: int, channel: str, ts: str) -> None:
    """Where the ticket's card went up. A ticket erased while its card was
    on its way (the erasure found no card to delete) has the card deleted
    through the queue instead, in this transaction."""
    stored = conn.execute(
        sa.update(tickets).where(tickets.c.id == ticket_id).values(slack_channel=channel, slack_ts=ts)
    ).rowcount
    if not stored:
        enqueue_erase(conn, channel, ts)


def ticket_exists(conn: Connection, ticket_id: int) -> bool:
    return conn.execute(sa.select(tickets.c.id).where(tickets.c.id == ticket_id)).first() is not None


def unposted(conn: Connection) -> list[int]:
    """Open tickets with no card: a crash between the ticket's commit and its
    post job's would leave them unposted; ``start`` enqueues them (deduplicated)."""
    return list(
        conn.execute(sa.select(tickets.c.id).where(tickets.c.status == "open", tickets.c.slack_ts.is_(None))).scalars()
    )


def add_slack_note(
    conn: Connection, conversation_id: int, text: str, *, author_id: int, slack_ts: str | None
) -> Message:
    """``HubService.add_note`` plus the meta that keeps the note out of the mirror, in one transaction."""
    note = conversations_tx.add_note(conn, conversation_id, text, author_id=author_id)
    meta = {**note.meta, "source": SOURCE, "slack_ts": slack_ts}
    conn.execute(sa.update(messages).where(messages.c.id == note.id).values(meta=meta))
    return note


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a ticket card shows, read in ONE transaction (a card never
    mixes a resolved conversation with a still-open ticket)."""

    ticket: Ticket
    conversation: Conversation
    contact: Contact
    history: list[Message]
    users: dict[int, tuple[str, str | None]]  # id -> (name, Slack user id)
    opted_out: tuple[str, ...] = ()  # channels the customer opted out of (SMS STOP)
    csat_rating: int | None = None  # the customer's answer to the survey sent on resolve


def snapshot(conn: Connection, ticket_id: int) -> Snapshot:
    ticket = tickets_queries.get_ticket(conn, ticket_id)
    found = conn.execute(
        sa.select(messages)
        .where(messages.c.conversation_id == ticket.conversation_id, messages.c.kind == MessageKind.MESSAGE.value)
        .order_by(messages.c.id.desc())
        .limit(5)
    )
    history = list(reversed([rows.message(r) for r in found]))
    wanted = {m.author_id for m in history if m.author_id is not None} | {ticket.assignee_id} - {None}
    people: Any = (
        conn.execute(sa.select(users.c.id, users.c.name, users.c.slack_user_id).where(users.c.id.in_(wanted)))
        if wanted
        else []
    )
    return Snapshot(
        ticket=ticket,
        conversation=conversations_tx.get_conversation(conn, ticket.conversation_id),
        contact=contacts_tx.get_contact(conn, ticket.contact_id),
        history=history,
        users={r.id: (r.name, r.slack_user_id) for r in people},
        opted_out=tuple(entry["channel"] for entry in consent.of_contact(conn, ticket.contact_id)),
        csat_rating=csat.rating_of_ticket(conn, ticket.id),
    )
