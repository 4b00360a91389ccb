"""A timeline generator for the report tests: it writes contacts,
conversations, messages, tickets, handoffs, agent replies, claims, resolves
and reopenings at chosen times, with the rows the hub's own transactions
write (``hub.conversations.transactions``, ``hub.tickets.transactions``,
``hub.audit``), and records what it made in plain Python (local dates from
``zoneinfo``, durations from the chosen times), so the tests compare the
reports with the records, never with the same SQL.

Times are given in the test's zone as naive wall-clock times
(``at("2026-03-29 00:30")``), or as aware datetimes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from hub import auth
from hub.storage import Database, open_database
from hub.storage.migrate import alembic_config, upgrade
from hub.storage.schema import (
    agent_profiles,
    audit_log,
    contacts,
    conversations,
    csat_surveys,
    identities,
    messages,
    tickets,
)


@dataclass
class Records:
    """What the generator made, counted as a support lead would count it."""

    zone: ZoneInfo
    # (local date, channel, figure) -> count; figures: inbound, outbound, outbound_bot, outbound_agent, new_conversations
    volume: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # (local date, agent id, figure) -> count; figures: replies, notes, claims, resolves
    agents: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    # ticket id -> its cycle's facts (opened local date, channel, team, priority, first response and resolution seconds)
    cycles: dict[int, dict[str, Any]] = field(default_factory=dict)

    def day(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).date().isoformat()


class TimelineWriter:
    """Writes in the caller's transaction (``db.write(lambda conn: ...)``)."""

    def __init__(self, conn: Connection, records: Records) -> None:
        self.conn = conn
        self.records = records
        self._addresses = 0
        self._open_ticket: dict[int, int] = {}

    def at(self, local: str | datetime) -> datetime:
        if isinstance(local, datetime):
            return local.astimezone(UTC)
        return datetime.fromisoformat(local).replace(tzinfo=self.records.zone).astimezone(UTC)

    # --- people ---------------------------------------------------------------------
    def agent(self, name: str, *, team: str = "support") -> int:
        user = auth.create_user(self.conn, name=name, email=f"{name.lower()}@agents.test", role="agent")
        self.conn.execute(
            sa.insert(agent_profiles).values(
                user_id=user.id,
                team=team,
                skills=[],
                capacity=10,
                senior=False,
                on_duty=True,
                open_tickets=0,
                last_assigned_seq=0,
                updated_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        return user.id

    def contact(self, name: str, *, created: str | datetime = "2026-01-01 00:00") -> int:
        when = self.at(created)
        contact_id = self.conn.execute(
            sa.insert(contacts)
            .values(name=name, attributes={}, tags=[], created_at=when, updated_at=when)
            .returning(contacts.c.id)
        ).scalar_one()
        self._addresses += 1
        self.conn.execute(
            sa.insert(identities).values(
                contact_id=contact_id,
                channel="email",
                address=f"{name.lower().replace(' ', '.')}.{self._addresses}@customers.test",
                created_at=when,
            )
        )
        return contact_id

    # --- conversations and messages ---------------------------------------------------
    def conversation(self, contact_id: int, channel: str, opened: str | datetime, text: str = "hello") -> int:
        """A customer opens a conversation with a first message (ingest)."""
        when = self.at(opened)
        identity_id = self.conn.execute(
            sa.select(identities.c.id).where(identities.c.contact_id == contact_id).limit(1)
        ).scalar()
        conversation_id = self.conn.execute(
            sa.insert(conversations)
            .values(
                contact_id=contact_id,
                channel=channel,
                identity_id=identity_id,
                status="open",
                priority="normal",
                handler="bot",
                created_at=when,
                updated_at=when,
                last_message_at=when,
            )
            .returning(conversations.c.id)
        ).scalar_one()
        self.records.volume[(self.records.day(when), channel, "new_conversations")] += 1
        self.customer(conversation_id, when, text)
        return conversation_id

    def _conversation(self, conversation_id: int) -> Any:
        return self.conn.execute(sa.select(conversations).where(conversations.c.id == conversation_id)).one()

    def _message(self, conversation_id: int, when: datetime, **values: Any) -> int:
        conversation = self._conversation(conversation_id)
        values.setdefault("attachments", [])
        values.setdefault("meta", {})
        values.setdefault("author_id", None)
        message_id = self.conn.execute(
            sa.insert(messages)
            .values(
                conversation_id=conversation_id,
                contact_id=conversation.contact_id,
                channel=conversation.channel,
                created_at=when,
                **values,
            )
            .returning(messages.c.id)
        ).scalar_one()
        self.conn.execute(
            sa.update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(last_message_at=when, updated_at=when)
        )
        return message_id

    def customer(self, conversation_id: int, sent: str | datetime, text: str = "a question") -> int:
        when = self.at(sent)
        message_id = self._message(
            conversation_id,
            when,
            direction="inbound",
            kind="message",
            author_kind="customer",
            body=text,
            delivery_status="received",
        )
        channel = self._conversation(conversation_id).channel
        self.records.volume[(self.records.day(when), channel, "inbound")] += 1
        return message_id

    def _outbound(self, conversation_id: int, when: datetime, author_kind: str, **values: Any) -> int:
        message_id = self._message(
            conversation_id,
            when,
            direction="outbound",
            kind="message",
            author_kind=author_kind,
            delivery_status="queued",
            **values,
        )
        channel = self._conversation(conversation_id).channel
        day = self.records.day(when)
        self.records.volume[(day, channel, "outbound")] += 1
        if author_kind in ("bot", "agent"):
            self.records.volume[(day, channel, f"outbound_{author_kind}")] += 1
        return message_id

    def bot(self, conversation_id: int, sent: str | datetime, decision: str, in_reply_to: int, parts: int = 1) -> None:
        """The bot's turn (``hub.bot.bridge._apply``): one or more messages
        carrying the decision and the message they answer."""
        when = self.at(sent)
        meta = {"in_reply_to": in_reply_to, "decision": {"action": decision}}
        for index in range(parts):
            self._outbound(
                conversation_id, when + timedelta(milliseconds=index), "bot", body=f"bot says {index}", meta=meta
            )

    def reply(self, conversation_id: int, agent_id: int, sent: str | datetime, text: str = "agent here") -> int:
        """An agent's reply; the open ticket's first response when it has none
        (``TicketService._queued_tx``), and its audit row."""
        when = self.at(sent)
        message_id = self._outbound(conversation_id, when, "agent", author_id=agent_id, body=text)
        ticket_id = self._open_ticket.get(conversation_id)
        if ticket_id is not None:
            done = self.conn.execute(
                sa.update(tickets)
                .where(tickets.c.id == ticket_id, tickets.c.first_response_at.is_(None))
                .values(first_response_at=when, updated_at=when)
            )
            if done.rowcount:
                cycle = self.records.cycles[ticket_id]
                cycle["first_response_s"] = (when - cycle["opened"]).total_seconds()
                cycle["responder"] = agent_id
        self._audit(agent_id, "conversation.reply", "conversation", conversation_id, when, message_id=message_id)
        self.records.agents[(self.records.day(when), agent_id, "replies")] += 1
        return message_id

    def note(self, conversation_id: int, agent_id: int, written: str | datetime) -> None:
        when = self.at(written)
        self._message(
            conversation_id,
            when,
            direction="internal",
            kind="note",
            author_kind="agent",
            author_id=agent_id,
            body="internal note",
            delivery_status="none",
        )
        self.records.agents[(self.records.day(when), agent_id, "notes")] += 1

    def survey(
        self,
        conversation_id: int,
        ticket_id: int | None,
        channel: str,
        sent: str | datetime,
        rating: int | None,
        *,
        kind: str = "csat",
        answered_after: timedelta = timedelta(hours=2),
    ) -> None:
        """A CSAT (or NPS) survey sent at ``sent``, answered ``answered_after`` later (``rating`` None: not answered)."""
        when = self.at(sent)
        self.conn.execute(
            sa.insert(csat_surveys).values(
                conversation_id=conversation_id,
                ticket_id=ticket_id,
                channel=channel,
                sent_at=when,
                expires_at=when + timedelta(hours=72),
                rating=rating,
                answered_at=None if rating is None else when + answered_after,
                kind=kind,
            )
        )

    def _event(self, conversation_id: int, when: datetime, event: str, body: str, **meta: Any) -> None:
        self._message(
            conversation_id,
            when,
            direction="internal",
            kind="event",
            author_kind="system",
            body=body,
            delivery_status="none",
            meta={"event": event, **meta},
        )

    def _audit(
        self, user_id: int, action: str, target_type: str, target_id: int, when: datetime, **details: Any
    ) -> None:
        self.conn.execute(
            sa.insert(audit_log).values(
                user_id=user_id,
                action=action,
                via="api",
                target_type=target_type,
                target_id=str(target_id),
                details=details,
                created_at=when,
            )
        )

    # --- tickets ------------------------------------------------------------------------
    def handoff(
        self,
        conversation_id: int,
        opened: str | datetime,
        *,
        source: str = "bot",
        reason: str = "customer-request",
        team: str = "support",
        priority: str = "normal",
        first_response_due: timedelta | None = None,
        resolution_due: timedelta | None = None,
    ) -> int:
        """A handoff opens a ticket (``tickets.transactions.open_ticket``)."""
        when = self.at(opened)
        conversation = self._conversation(conversation_id)
        ticket_id = self.conn.execute(
            sa.insert(tickets)
            .values(
                conversation_id=conversation_id,
                contact_id=conversation.contact_id,
                open_conversation_id=conversation_id,
                status="open",
                priority=priority,
                team=team,
                source=source,
                reason=reason,
                summary="summary",
                kb_hits=[],
                created_at=when,
                updated_at=when,
                first_response_due=when + first_response_due if first_response_due else None,
                resolution_due=when + resolution_due if resolution_due else None,
                sla_paused_seconds=0.0,
                escalations=0,
            )
            .returning(tickets.c.id)
        ).scalar_one()
        self.conn.execute(
            sa.update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(handler="human", priority=priority, status="open", resolved_at=None, updated_at=when)
        )
        self._event(conversation_id, when, "ticket-opened", f"Ticket #{ticket_id} opened", ticket_id=ticket_id)
        self._open_ticket[conversation_id] = ticket_id
        self.records.cycles[ticket_id] = {
            "opened": when,
            "day": self.records.day(when),
            "channel": conversation.channel,
            "team": team,
            "priority": priority,
            "first_response_s": None,
            "resolution_s": None,
            "responder": None,
            "assignee": None,
            "source": source,
        }
        return ticket_id

    def claim(self, ticket_id: int, agent_id: int, claimed: str | datetime) -> None:
        when = self.at(claimed)
        self.conn.execute(
            sa.update(tickets).where(tickets.c.id == ticket_id).values(assignee_id=agent_id, updated_at=when)
        )
        conversation_id = self.conn.execute(
            sa.select(tickets.c.conversation_id).where(tickets.c.id == ticket_id)
        ).scalar_one()
        self.conn.execute(
            sa.update(conversations).where(conversations.c.id == conversation_id).values(assignee_id=agent_id)
        )
        self._audit(agent_id, "ticket.claim", "ticket", ticket_id, when)
        self.records.cycles[ticket_id]["assignee"] = agent_id
        self.records.agents[(self.records.day(when), agent_id, "claims")] += 1

    def breach(self, ticket_id: int, target: str, at: str | datetime) -> None:
        """The SLA scheduler's record of a breach (``tickets.transactions.escalate``)."""
        when = self.at(at)
        self.conn.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values({f"{target}_breached_at": when}))

    def resolve(self, ticket_id: int, agent_id: int, resolved: str | datetime) -> None:
        """``tickets.transactions.resolve``: the ticket and its conversation,
        the bot takes it back (``hub.bot.bridge._resolved_tx``), audited."""
        when = self.at(resolved)
        conversation_id = self.conn.execute(
            sa.select(tickets.c.conversation_id).where(tickets.c.id == ticket_id)
        ).scalar_one()
        self.conn.execute(
            sa.update(tickets)
            .where(tickets.c.id == ticket_id)
            .values(status="resolved", open_conversation_id=None, resolved_at=when, updated_at=when)
        )
        self.conn.execute(
            sa.update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(status="resolved", resolved_at=when, handler="bot", updated_at=when)
        )
        self._event(conversation_id, when, "status-changed", "Status changed to resolved", status="resolved")
        self._open_ticket.pop(conversation_id, None)
        self._audit(agent_id, "ticket.resolve", "ticket", ticket_id, when)
        cycle = self.records.cycles[ticket_id]
        cycle["resolution_s"] = (when - cycle["opened"]).total_seconds()
        self.records.agents[(self.records.day(when), agent_id, "resolves")] += 1

    def reopen(self, conversation_id: int, written: str | datetime, text: str = "it broke again") -> int:
        """A customer writes to a resolved conversation (``ingest._find_or_open``):
        it reopens, with a timeline event, then their message."""
        when = self.at(written)
        self.conn.execute(
            sa.update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(status="open", resolved_at=None, updated_at=when)
        )
        self._event(conversation_id, when, "reopened", "Conversation reopened by the customer")
        return self.customer(conversation_id, when, text)


async def migrated_again(database_url: str, revision: str) -> Database:
    """Back to the schema before ``revision`` and forward again (the
    migration refills what it adds from the timeline); the database, open."""
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), f"{revision}-1")
    await asyncio.to_thread(upgrade, database_url)
    return open_database(database_url)
