"""``CannedReplies``: the replies' use cases behind the API and Slack.

Writes are audited in their transaction; ``render_for`` fills a reply's
variables from one read of the conversation, its contact, its ticket and
the calling agent; ``send`` renders and queues it to the customer as that
agent's reply (``HubService.reply``: the outbox, the timeline, the Slack
thread mirror and the first-response clock, as for any reply).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.audit import Actor, Audit
from hub.canned import store, templates
from hub.canned.store import CannedReply
from hub.conversations import contacts as contacts_tx
from hub.conversations import transactions as conversations_tx
from hub.errors import NotFound
from hub.events import Clock
from hub.models import AuthorKind, Message
from hub.storage.schema import tickets, users

if TYPE_CHECKING:
    from hub.conversations.service import HubService
    from hub.storage import Database


class CannedReplies:
    def __init__(self, db: Database, service: HubService, *, clock: Clock) -> None:
        self.db = db
        self.service = service
        self.clock = clock

    async def list(self, *, team: str | None = None) -> list[CannedReply]:
        return await self.db.read(lambda conn: store.list_replies(conn, team=team))

    async def get(self, name: str) -> CannedReply:
        return await self.db.read(store.get_reply, name)

    async def create(self, values: dict[str, Any], *, actor: Actor) -> CannedReply:
        audit = Audit(actor, "canned_reply.create", "canned_reply", values.get("name"))
        now = self.clock.now()
        return await self.db.write(
            lambda conn: store.create_reply(conn, values, user_id=actor.user_id, now=now, audit=audit)
        )

    async def update(self, name: str, changes: dict[str, Any], *, actor: Actor) -> CannedReply:
        audit = Audit(actor, "canned_reply.update", "canned_reply", name)
        now = self.clock.now()
        return await self.db.write(
            lambda conn: store.update_reply(conn, name, changes, user_id=actor.user_id, now=now, audit=audit)
        )

    async def delete(self, name: str, *, actor: Actor) -> None:
        audit = Audit(actor, "canned_reply.delete", "canned_reply", name)
        await self.db.write(lambda conn: store.delete_reply(conn, name, audit=audit))

    async def render_for(self, name: str, conversation_id: int, agent_id: int) -> tuple[CannedReply, str]:
        """The reply and its text for this conversation, written by ``agent_id``."""

        def read(conn: Connection) -> tuple[CannedReply, dict[str, dict[str, Any]]]:
            reply = store.get_reply(conn, name)
            return reply, variables(conn, conversation_id, agent_id)

        reply, values = await self.db.read(read)
        return reply, templates.render(reply.body, values)

    async def send(
        self, name: str, conversation_id: int, *, agent_id: int, via: str, idempotency_key: str | None = None
    ) -> Message:
        """Render the reply and queue it to the customer as ``agent_id``'s reply (audited)."""
        reply, text = await self.render_for(name, conversation_id, agent_id)
        return await self.service.reply(
            conversation_id,
            text,
            author_kind=AuthorKind.AGENT,
            author_id=agent_id,
            idempotency_key=idempotency_key,
            meta={"canned_reply": reply.name},
            audit=Audit(
                Actor(agent_id, via),
                "conversation.reply",
                "conversation",
                conversation_id,
                {"canned_reply": reply.name},
            ),
        )


def variables(conn: Connection, conversation_id: int, agent_id: int | None) -> dict[str, dict[str, Any]]:
    """A reply's variables: the conversation's contact and ticket (the open
    one, else the latest), and the agent who sends it (None: an automation's
    reply with nobody assigned, ``agent`` renders empty)."""
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    contact = contacts_tx.get_contact(conn, conversation.contact_id)
    ticket = conn.execute(
        sa.select(tickets.c.id, tickets.c.priority)
        .where(tickets.c.conversation_id == conversation_id)
        .order_by((tickets.c.status == "open").desc(), tickets.c.id.desc())
        .limit(1)
    ).first()
    agent = None if agent_id is None else conn.execute(sa.select(users.c.name).where(users.c.id == agent_id)).first()
    if agent is None and agent_id is not None:
        raise NotFound(f"user {agent_id} does not exist")
    return {
        "contact": {"first_name": templates.first_name(contact.name), "name": contact.name or ""},
        "ticket": {
            "id": ticket.id if ticket is not None else None,
            "priority": ticket.priority if ticket is not None else conversation.priority.value,
        },
        "agent": {"name": agent.name, "first_name": templates.first_name(agent.name)}
        if agent is not None
        else {"name": "", "first_name": ""},
        "conversation": {"id": conversation.id},
    }


async def canned_replies_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the canned replies (nothing to close; after the hub service)."""
    app[keys.CANNED_REPLIES] = CannedReplies(app[keys.DATABASE], app[keys.SERVICE], clock=app[keys.CLOCK])
    yield
