"""The agents' desk in Slack: the hub side of ``channels.slack``.

- Ticket cards: a ticket opened -> a ``post_ticket`` job (Block Kit card in the
  team's channel, urgent ones in the urgent channel); a ticket changed -> an
  ``update_ticket`` job (chat.update); SLA breach -> a notice in the team
  channel. All through the durable ``hub.slack.jobs`` queue.
- Thread mirroring: customer messages (and replies or notes made outside
  Slack) are posted in the card's thread; an agent's reply in the thread goes
  to the customer on the customer's own channel (``HubService.reply``), or
  stays an internal note when it starts with ``HUB_SLACK_NOTE_PREFIX``.
- Buttons (Claim / Resolve / Priority / Snooze) and ``/hub`` commands.

Slack payloads arrive acked; each is worked in a tracked task (cancelled on
shutdown). Events are handled once per ``event_id`` (stored in
``slack_events``, so Slack's retries and redeliveries after a restart are
dropped); a failure releases the id so a retry can try again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.conversations import contacts as contacts_tx
from hub.conversations import transactions as conversations_tx
from hub.errors import ChannelSendError, HubError, InvalidInput
from hub.events import MessageQueued, MessageReceived, NoteAdded, SlaBreached, TicketChanged, TicketOpened, utcnow
from hub.models import AuthorKind, Contact, Conversation, Message, MessageKind
from hub.slack import cards as slack_blocks
from hub.slack import jobs as slack_jobs
from hub.storage import insert_ignore, rows
from hub.storage.schema import messages, slack_events, tickets, users
from hub.tickets import queries as tickets_queries

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.conversations.service import HubService
    from hub.tickets.model import Ticket
    from hub.tickets.service import TicketService

log = logging.getLogger(__name__)


# Replies and notes written from Slack carry this in their meta, so the mirror
# never echoes them back into the thread they came from (on any instance).
SOURCE = "slack"


class SlackTransport(Protocol):
    """What the desk uses of ``channels.slack.SlackChannel``: the Web API,
    the bot's own user id, and the hand-over of agent payloads to the desk."""

    bot_user_id: str | None

    def attach(self, handler: Any) -> None: ...

    async def call(self, method: str, *, http_get: bool = False, **kwargs: Any) -> dict[str, Any]: ...

    async def whoami(self) -> str | None: ...


# Returns hit dicts ({"title", "url", ...}) or an object with ``.hits`` whose
# items have ``to_dict()`` (knowledge_base.models.SearchResult).
KbSearch = Callable[[str, int], Awaitable[Any]]


def _hit_dicts(result: Any) -> list[dict[str, Any]]:
    hits = getattr(result, "hits", result) or []
    return [hit.to_dict() if hasattr(hit, "to_dict") else dict(hit) for hit in hits]


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
    conn.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(slack_channel=channel, slack_ts=ts))


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
    people = (
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
    )


def parse_team_channels(text: str) -> dict[str, str]:
    found = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        team, _, channel = part.partition("=")
        if team.strip() and channel.strip():
            found[team.strip()] = channel.strip()
    return found


class SlackDesk:
    def __init__(
        self,
        app: web.Application,
        channel: SlackTransport,
        service: HubService,
        tickets: TicketService,
        settings: Settings,
    ) -> None:
        self.app = app
        self.channel = channel
        self.service = service
        self.tickets = tickets
        self.db = service.db
        self.bus = service.bus
        self.settings = settings
        self.team_channels = parse_team_channels(settings.slack_team_channels)
        self.worker = slack_jobs.SlackJobWorker(
            self.db,
            self.execute,
            max_attempts=settings.slack_jobs_max_attempts,
            base_delay=settings.slack_jobs_base_delay,
            max_delay=settings.slack_jobs_max_delay,
            poll_interval=settings.slack_jobs_poll_interval,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self.kb_search: KbSearch | None = None

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        for ticket_id in await self.db.read(unposted):
            await self.db.write(
                slack_jobs.enqueue, "post_ticket", {}, ticket_id=ticket_id, dedup_key=f"post:{ticket_id}"
            )
        await self.db.write(forget_events, timedelta(hours=self.settings.slack_event_ttl_hours))
        self._unsubscribe = [
            self.bus.subscribe(TicketOpened, self._on_ticket_opened),  # type: ignore[arg-type]
            self.bus.subscribe(TicketChanged, self._on_ticket_changed),  # type: ignore[arg-type]
            self.bus.subscribe(SlaBreached, self._on_breach),  # type: ignore[arg-type]
            self.bus.subscribe(MessageReceived, self._on_customer_message),  # type: ignore[arg-type]
            self.bus.subscribe(MessageQueued, self._on_outbound),  # type: ignore[arg-type]
            self.bus.subscribe(NoteAdded, self._on_note),  # type: ignore[arg-type]
        ]
        self.channel.attach(self)
        self.worker.start()
        self._spawn(self._housekeeping(), "slack-housekeeping")

    async def stop(self) -> None:
        self.channel.attach(None)
        for undo in self._unsubscribe:
            undo()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.worker.stop()

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Slack task %s failed", task.get_name(), exc_info=task.exception())

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(3600)
            try:
                await self.db.write(forget_events, timedelta(hours=self.settings.slack_event_ttl_hours))
            except Exception:
                log.exception("forgetting old Slack event ids failed")

    def submit(self, kind: str, body: dict[str, Any]) -> None:
        handler = {"event": self._on_event, "action": self._on_action, "command": self._on_command}[kind]
        self._spawn(handler(body), f"slack-{kind}")

    # --- Slack -> hub ------------------------------------------------------------------
    async def _on_event(self, body: dict[str, Any]) -> None:
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
            await self._ephemeral(
                event["channel"], user, "You are not a Servicehub agent, so your message was not sent to the customer."
            )
            return
        text = slack_blocks.plain_text(event.get("text") or "").strip()
        prefix = self.settings.slack_note_prefix
        try:
            if prefix and text.startswith(prefix):
                note_text = text[len(prefix) :].strip()
                if note_text:
                    note = await self.db.write(
                        add_slack_note, ticket.conversation_id, note_text, author_id=agent.id, slack_ts=event.get("ts")
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
                )
        except InvalidInput as err:
            await self._ephemeral(event["channel"], user, f"Not sent: {err.message}")

    async def _on_action(self, body: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        for action in body.get("actions") or []:
            value = action.get("value") or (action.get("selected_option") or {}).get("value") or ""
            ticket_ref, _, option = value.partition(":")
            agent = await self.tickets.agent_for_slack_user(user)
            if agent is None:
                await self._ephemeral(
                    channel, user, "Only Servicehub agents can act on tickets. Ask an admin to link your Slack account."
                )
                return
            try:
                ticket_id = int(ticket_ref)
                action_id = action.get("action_id")
                if action_id == slack_blocks.CLAIM:
                    await self.tickets.claim(ticket_id, agent.id)
                elif action_id == slack_blocks.RESOLVE:
                    await self.tickets.resolve(ticket_id, actor_id=agent.id)
                elif action_id == slack_blocks.PRIORITY:
                    await self.tickets.set_priority(ticket_id, option, actor_id=agent.id)
                elif action_id == slack_blocks.SNOOZE:
                    await self.tickets.snooze(ticket_id, actor_id=agent.id)
            except ValueError:
                await self._ephemeral(channel, user, "That button carries no ticket.")
            except HubError as err:
                await self._ephemeral(channel, user, err.message)

    async def _on_command(self, body: dict[str, Any]) -> None:
        user, channel = body.get("user_id", ""), body.get("channel_id", "")
        words = (body.get("text") or "").strip().split(maxsplit=1)
        verb, rest = (words[0].lower() if words else "help"), (words[1].strip() if len(words) > 1 else "")
        agent = await self.tickets.agent_for_slack_user(user)
        if agent is None:
            await self._ephemeral(
                channel, user, "Only Servicehub agents can use /hub. Ask an admin to link your Slack account."
            )
            return
        try:
            text = await self._command(agent.id, verb, rest)
        except HubError as err:
            text = err.message
        await self._ephemeral(channel, user, text)

    async def _command(self, agent_id: int, verb: str, rest: str) -> str:
        if verb == "queue":
            waiting = await self.tickets.queue(limit=15)
            if not waiting:
                return "The queue is empty."
            lines = [f"• #{t.id} [{t.priority.value}] {t.team}: {slack_blocks.escape(t.summary[:80])}" for t in waiting]
            return f"*{len(waiting)} unassigned ticket(s)*\n" + "\n".join(lines)
        if verb == "duty":
            if rest not in ("on", "off"):
                return "Usage: /hub duty on|off"
            agent = await self.tickets.set_duty(agent_id, rest == "on", actor_id=agent_id)
            return f"You are {'on' if agent.on_duty else 'off'} duty ({agent.open_tickets} open ticket(s))."
        if verb == "search":
            if not rest:
                return "Usage: /hub search <text>"
            search = self._kb_search()
            if search is None:
                return "The knowledge base is not connected to the hub."
            hits = [self._absolute(hit) for hit in _hit_dicts(await search(rest, 5))]
            if not hits:
                return f"No article matches “{slack_blocks.escape(rest)}”."
            lines = []
            for hit in hits:
                title = slack_blocks.escape(str(hit.get("title") or hit.get("id") or "article"))
                lines.append(f"• <{hit['url']}|{title}>" if hit.get("url") else f"• {title}")
            return "\n".join(lines)
        if verb == "contact":
            return await self._contact_summary(rest)
        return "Usage: /hub queue | /hub duty on|off | /hub search <text> | /hub contact <email|phone>"

    def use_kb_search(self, search: KbSearch) -> None:
        """``/hub search`` asks ``search`` instead of the hub's knowledge base."""
        self.kb_search = search

    def _kb_search(self) -> KbSearch | None:
        """The registered search (``use_kb_search``), else the hub's knowledge base if it runs."""
        if self.kb_search is not None:
            return self.kb_search
        try:
            from hub.kb.setup import KNOWLEDGE_BASE
        except ImportError:  # pragma: no cover - the knowledge base is optional
            return None
        kb = self.app.get(KNOWLEDGE_BASE)
        if kb is None:
            return None
        return lambda query, limit: kb.search(query, k=limit)

    def _absolute(self, hit: dict[str, Any]) -> dict[str, Any]:
        url = hit.get("url")
        if isinstance(url, str) and url.startswith("/"):
            return {**hit, "url": self.settings.public_url.rstrip("/") + url}
        return hit

    async def _contact_summary(self, ref: str) -> str:
        if not ref:
            return "Usage: /hub contact <email|phone>"
        kind = "email" if "@" in ref else "phone"

        def find(conn: Connection) -> int | None:
            row = contacts_tx.find_identity(conn, kind, contacts_tx.normalise_address(kind, ref))
            return row.contact_id if row is not None else None

        contact_id = await self.db.read(find)
        if contact_id is None:
            return f"No contact with {kind} {slack_blocks.escape(ref)}."
        contact = await self.service.get_contact(contact_id)
        page = await self.service.timeline(contact_id=contact_id, limit=10)
        conversations = await self.service.list_conversations(contact_id=contact_id, limit=5)
        head = f"*{slack_blocks.escape(contact.name or 'Unnamed contact')}* · {contact.email or '—'} · {contact.phone or '—'}"
        convs = ", ".join(f"#{c.id} {c.channel} ({c.status.value})" for c in conversations) or "none"
        lines = [
            f"`{m.created_at:%m-%d %H:%M}` {m.channel} {m.author_kind.value}{' (note)' if m.kind.value == 'note' else ''}: "
            f"{slack_blocks.escape(m.body[:120])}"
            for m in page.items
        ]
        return f"{head}\nConversations: {convs}\n*Timeline*\n" + ("\n".join(lines) or "—")

    async def _ephemeral(self, channel: str, user: str, text: str) -> None:
        # Answers to one person: direct, not queued (nobody else would see them).
        try:
            await self.channel.call("chat.postEphemeral", channel=channel, user=user, text=text)
        except ChannelSendError as err:
            log.warning("ephemeral to %s failed: %s", user, err.message)

    # --- hub -> Slack (queued) -------------------------------------------------------------
    async def _enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        ticket_id: int | None,
        coalesce: bool = False,
        dedup_key: str | None = None,
    ) -> None:
        await self.db.write(
            slack_jobs.enqueue, kind, payload, ticket_id=ticket_id, coalesce=coalesce, dedup_key=dedup_key
        )
        self.worker.notify()

    async def _on_ticket_opened(self, event: TicketOpened) -> None:
        await self._enqueue("post_ticket", {}, ticket_id=event.ticket_id, dedup_key=f"post:{event.ticket_id}")

    async def _on_ticket_changed(self, event: TicketChanged) -> None:
        await self._enqueue("update_ticket", {}, ticket_id=event.ticket_id, coalesce=True)
        if event.changes.get("priority") == "urgent":
            await self._escalated(event.ticket_id, event.at)

    async def _escalated(self, ticket_id: int, at: datetime) -> None:
        """A ticket became urgent after its card went up: the card (and its
        thread) stays where it is, and the urgent channel gets a link to it."""
        if self.settings.slack_urgent_channel:
            await self._enqueue("escalate", {}, ticket_id=ticket_id, dedup_key=f"escalate:{ticket_id}:{at.isoformat()}")

    async def _on_breach(self, event: SlaBreached) -> None:
        label = "first response" if event.target == "first_response" else "resolution"
        channel = self.team_channels.get(event.team) or self.settings.slack_default_channel
        if channel:
            text = (
                f":warning: SLA breached on ticket #{event.ticket_id} ({label}); "
                f"now {event.priority}{' — unassigned' if event.assignee_id is None else ''}."
            )
            await self._enqueue(
                "notify",
                {"channel": channel, "text": text},
                ticket_id=None,
                dedup_key=f"breach:{event.ticket_id}:{event.target}:{event.at.isoformat()}",
            )
        await self._enqueue("update_ticket", {}, ticket_id=event.ticket_id, coalesce=True)
        if event.priority == "urgent":
            await self._escalated(event.ticket_id, event.at)

    async def _open_ticket(self, conversation_id: int) -> Ticket | None:
        return await self.db.read(tickets_queries.open_ticket_of, conversation_id)

    async def _on_customer_message(self, event: MessageReceived) -> None:
        if event.handler != "human":
            return  # no ticket yet: the card shows the last messages when it is posted
        ticket = await self._open_ticket(event.conversation_id)
        if ticket is not None:
            contact = await self.service.get_contact(event.contact_id)
            text = slack_blocks.mirrored_text(contact.name or "Customer", event.body)
            await self._enqueue("thread", {"text": text}, ticket_id=ticket.id, dedup_key=f"thread:{event.message_id}")
            await self._enqueue("update_ticket", {}, ticket_id=ticket.id, coalesce=True)

    async def _on_outbound(self, event: MessageQueued) -> None:
        if event.author_kind == AuthorKind.CUSTOMER.value:
            return
        await self._mirror(event.conversation_id, event.message_id, note=False)

    async def _on_note(self, event: NoteAdded) -> None:
        await self._mirror(event.conversation_id, event.message_id, note=True)

    async def _mirror(self, conversation_id: int, message_id: int, *, note: bool) -> None:
        """A reply or note written outside Slack, into the ticket's thread
        (what came from Slack itself is already there)."""
        ticket = await self._open_ticket(conversation_id)
        if ticket is None:
            return
        message = await self.service.get_message(message_id)
        if message.meta.get("source") == SOURCE:
            return
        who = await self._author(message.author_kind, message.author_id)
        text = slack_blocks.mirrored_text(who, message.body, note=note)
        await self._enqueue("thread", {"text": text}, ticket_id=ticket.id, dedup_key=f"thread:{message.id}")

    async def _author(self, kind: AuthorKind, author_id: int | None) -> str:
        if kind == AuthorKind.AGENT and author_id is not None:
            try:
                agent = await self.tickets.get_agent(author_id)
            except HubError:
                return "Agent"
            return agent.user.name
        return {AuthorKind.BOT: "Bot", AuthorKind.SYSTEM: "Hub"}.get(kind, "Agent")

    # --- the job executor -------------------------------------------------------------------
    def channel_for(self, ticket: Ticket) -> str:
        if ticket.priority.value == "urgent" and self.settings.slack_urgent_channel:
            return self.settings.slack_urgent_channel
        channel = self.team_channels.get(ticket.team) or self.settings.slack_default_channel
        if not channel:
            raise ChannelSendError(
                f"no Slack channel for team {ticket.team!r} (HUB_SLACK_TEAM_CHANNELS / HUB_SLACK_DEFAULT_CHANNEL)",
                retryable=False,
            )
        return channel

    def card(self, snap: Snapshot) -> slack_blocks.TicketCard:
        ticket, contact = snap.ticket, snap.contact
        names = {"bot": "Bot", "system": "Hub"}
        last = []
        for message in snap.history:
            if message.author_kind == AuthorKind.CUSTOMER:
                who = contact.name or "Customer"
            elif message.author_kind == AuthorKind.AGENT:
                who = snap.users.get(message.author_id, ("Agent", None))[0]
            else:
                who = names.get(message.author_kind.value, "Hub")
            last.append((who, message.body))
        assignee = None
        if ticket.assignee_id is not None:
            name, slack_id = snap.users.get(ticket.assignee_id, (f"user {ticket.assignee_id}", None))
            assignee = f"<@{slack_id}>" if slack_id else name
        customer = " · ".join(filter(None, [contact.name, contact.email, contact.phone])) or f"contact {contact.id}"
        return slack_blocks.TicketCard(
            ticket_id=ticket.id,
            conversation_id=ticket.conversation_id,
            customer=customer,
            channel=snap.conversation.channel,
            priority=ticket.priority.value,
            status=ticket.status.value,
            conversation_status=snap.conversation.status.value,
            team=ticket.team,
            summary=ticket.summary,
            reason=ticket.reason,
            assignee=assignee,
            sla_due=ticket.sla_due,
            sla_breached=bool(ticket.first_response_breached_at or ticket.resolution_breached_at),
            snoozed_until=ticket.snoozed_until,
            last_messages=last,
            kb_hits=[self._absolute(hit) for hit in ticket.kb_hits if isinstance(hit, dict)],
        )

    async def execute(self, job: slack_jobs.Job) -> None:
        if job.kind == "notify":
            await self.channel.call("chat.postMessage", channel=job.payload["channel"], text=job.payload["text"])
            return
        snap = await self.db.read(snapshot, job.ticket_id)
        ticket = snap.ticket
        if job.kind == "escalate":
            await self._announce_escalation(snap)
            return
        if job.kind == "thread":
            if not ticket.slack_ts:
                raise ChannelSendError(f"ticket {ticket.id} has no Slack card yet", retryable=True)
            await self.channel.call(
                "chat.postMessage", channel=ticket.slack_channel, thread_ts=ticket.slack_ts, text=job.payload["text"]
            )
            return
        card = self.card(snap)
        blocks, text = slack_blocks.ticket_blocks(card), slack_blocks.fallback_text(card)
        if ticket.slack_ts:  # an update, or a post job run again after its card went up
            await self.channel.call(
                "chat.update", channel=ticket.slack_channel, ts=ticket.slack_ts, text=text, blocks=blocks
            )
            return
        if job.kind == "update_ticket":
            return  # the pending post job renders the latest state
        channel = self.channel_for(ticket)
        data = await self.channel.call("chat.postMessage", channel=channel, text=text, blocks=blocks)
        await self.db.write(store_card, ticket.id, data.get("channel") or channel, data["ts"])

    async def _announce_escalation(self, snap: Snapshot) -> None:
        ticket, urgent = snap.ticket, self.settings.slack_urgent_channel
        if not urgent or ticket.priority.value != "urgent" or ticket.status.value == "resolved":
            return  # changed again since, or nowhere to announce it
        if not ticket.slack_ts or ticket.slack_channel == urgent:
            return  # no card yet (it will be posted to the urgent channel) or already there
        data = await self.channel.call(
            "chat.getPermalink", http_get=True, channel=ticket.slack_channel, message_ts=ticket.slack_ts
        )
        card = self.card(snap)
        where = (
            f"<{data['permalink']}|the ticket's card>"
            if data.get("permalink")
            else f"the card in <#{ticket.slack_channel}>"
        )
        text = (
            f":rotating_light: Ticket #{ticket.id} is now *urgent*: {card.customer} ({card.channel}). "
            f"Work it in the thread of {where}."
        )
        await self.channel.call("chat.postMessage", channel=urgent, text=text, unfurl_links=False)


async def slack_desk_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the Slack desk when the ``slack`` channel is enabled."""
    registered = app[keys.CHANNELS].get("slack")
    if registered is None:
        yield
        return
    # The channel registered as "slack" is channels.slack.SlackChannel.
    channel = cast(SlackTransport, registered)
    desk = SlackDesk(app, channel, app[keys.SERVICE], app[keys.TICKETS], app[keys.SETTINGS])
    try:
        await channel.whoami()
    except ChannelSendError as err:
        log.warning("Slack auth.test failed (%s); own messages are still skipped by bot_id", err.message)
    await desk.start()
    app[keys.SLACK_DESK] = desk
    try:
        yield
    finally:
        await desk.stop()
