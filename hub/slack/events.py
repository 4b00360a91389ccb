"""Slack -> hub: agents' replies in a ticket's thread (to the customer, or an
internal note with ``HUB_SLACK_NOTE_PREFIX``) and the card's buttons.

Events are handled once per ``event_id`` (``slack_events``): Slack's retries
and redeliveries after a restart are dropped; a failure releases the id so a
retry can try again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from hub.audit import Actor, Audit, audited
from hub.errors import HubError, InvalidInput
from hub.events import NoteAdded
from hub.models import AuthorKind
from hub.slack import cards as slack_blocks
from hub.slack.store import SOURCE, add_slack_note, claim_event, release_event
from hub.slack.transport import SlackTransport, post_ephemeral
from hub.tickets import queries as tickets_queries

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.conversations.service import HubService
    from hub.tickets.model import Ticket
    from hub.tickets.service import TicketService

log = logging.getLogger(__name__)


class SlackInbound:
    """Thread replies and button actions from agents in Slack."""

    def __init__(
        self, channel: SlackTransport, service: HubService, tickets: TicketService, settings: Settings
    ) -> None:
        self.channel = channel
        self.service = service
        self.tickets = tickets
        self.db = service.db
        self.bus = service.bus
        self.settings = settings

    async def on_event(self, body: dict[str, Any]) -> None:
        event_id = body.get("event_id")
        event = body.get("event") or {}
        if event.get("type") != "message" or event.get("subtype") or event.get("bot_id"):
            return  # edits, joins, and every bot's messages (ours included): no loops
        user = event.get("user")
        thread_ts = event.get("thread_ts")
        if not user or user == self.channel.bot_user_id or not thread_ts or thread_ts == event.get("ts"):
            return  # only people's replies in a ticket's thread concern the hub
        ticket = await self.db.read(tickets_queries.ticket_for_slack_message, event.get("channel", ""), thread_ts)
        if ticket is None or not event_id:
            return
        if not await self.db.write(claim_event, event_id):
            log.debug("Slack event %s already handled (a retry)", event_id)
            return
        try:
            await self._on_thread_reply(ticket, event, event_id)
        except BaseException:
            await asyncio.shield(self.db.write(release_event, event_id))
            raise

    async def _on_thread_reply(self, ticket: Ticket, event: dict[str, Any], event_id: str) -> None:
        user = event["user"]
        agent = await self.tickets.agent_for_slack_user(user)
        if agent is None:
            await post_ephemeral(
                self.channel,
                event["channel"],
                user,
                "You are not a Servicehub agent, so your message was not sent to the customer.",
            )
            return
        text = slack_blocks.plain_text(event.get("text") or "").strip()
        prefix = self.settings.slack_note_prefix
        try:
            if prefix and text.startswith(prefix):
                note_text = text[len(prefix) :].strip()
                if note_text:
                    entry = _audit(agent.id, "conversation.note", "conversation", ticket.conversation_id)
                    note = await self.db.write(
                        audited(add_slack_note, entry, lambda note: {"message_id": note.id}),
                        ticket.conversation_id,
                        note_text,
                        author_id=agent.id,
                        slack_ts=event.get("ts"),
                    )
                    await self.bus.publish(
                        NoteAdded(message_id=note.id, conversation_id=ticket.conversation_id, author_id=agent.id)
                    )
            elif text:
                await self.service.reply(
                    ticket.conversation_id,
                    text,
                    author_kind=AuthorKind.AGENT,
                    author_id=agent.id,
                    idempotency_key=f"slack:{event_id}",
                    meta={"source": SOURCE, "slack_ts": event.get("ts")},
                    audit=_audit(agent.id, "conversation.reply", "conversation", ticket.conversation_id),
                )
        except InvalidInput as err:
            await post_ephemeral(self.channel, event["channel"], user, f"Not sent: {err.message}")

    async def on_action(self, body: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        for action in body.get("actions") or []:
            value = action.get("value") or (action.get("selected_option") or {}).get("value") or ""
            ticket_ref, _, option = value.partition(":")
            agent = await self.tickets.agent_for_slack_user(user)
            if agent is None:
                await post_ephemeral(
                    self.channel,
                    channel,
                    user,
                    "Only Servicehub agents can act on tickets. Ask an admin to link your Slack account.",
                )
                return
            try:
                ticket_id = int(ticket_ref)
                action_id = action.get("action_id")
                if action_id == slack_blocks.CLAIM:
                    await self.tickets.claim(
                        ticket_id, agent.id, audit=_audit(agent.id, "ticket.claim", "ticket", ticket_id)
                    )
                elif action_id == slack_blocks.RESOLVE:
                    await self.tickets.resolve(
                        ticket_id, actor_id=agent.id, audit=_audit(agent.id, "ticket.resolve", "ticket", ticket_id)
                    )
                elif action_id == slack_blocks.PRIORITY:
                    await self.tickets.set_priority(
                        ticket_id,
                        option,
                        actor_id=agent.id,
                        audit=_audit(agent.id, "ticket.priority", "ticket", ticket_id, priority=option),
                    )
                elif action_id == slack_blocks.SNOOZE:
                    await self.tickets.snooze(
                        ticket_id, actor_id=agent.id, audit=_audit(agent.id, "ticket.snooze", "ticket", ticket_id)
                    )
            except ValueError:
                await post_ephemeral(self.channel, channel, user, "That button carries no ticket.")
            except HubError as err:
                await post_ephemeral(self.channel, channel, user, err.message)


def _audit(agent_id: int, action: str, target_type: str, target_id: int, **details: Any) -> Audit:
    """An agent's action from Slack, recorded with its change (``hub.audit``)."""
    return Audit(Actor(agent_id, "slack"), action, target_type, target_id, details)
