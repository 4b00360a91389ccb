"""The agents' desk in Slack: the hub side of ``channels.slack``.

- Ticket cards: a ticket opened -> a ``post_ticket`` job (Block Kit card in the
  team's channel, urgent ones in the urgent channel); a ticket changed -> an
  ``update_ticket`` job (chat.update); SLA breach -> a notice in the team
  channel; SLA near its breach (``HUB_SLA_WARN_AT``) -> a notice to the
  assignee (a DM) or the team channel. All through the durable ``hub.slack.jobs`` queue, each job written
  in the transaction of its cause (in-transaction hooks, ``hub.txhooks``):
  a crash or a lost bus message cannot lose a card or a thread message.
- Thread mirroring: customer messages (and replies or notes made outside
  Slack) are posted in the card's thread (a job names the message; its text
  is read when the job runs, so none is copied into the queue); an agent's reply in the thread goes
  to the customer on the customer's own channel (``HubService.reply``), or
  stays an internal note when it starts with ``HUB_SLACK_NOTE_PREFIX``.
- Buttons (Claim / Resolve / Priority / Snooze) and ``/hub`` commands.

Slack payloads arrive acked; each is worked in a tracked task (cancelled on
shutdown) by ``hub.slack.events`` (thread replies, buttons) or
``hub.slack.commands`` (``/hub``); ``hub.slack.store`` holds the desk's tables.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from aiohttp import web

from hub import keys
from hub.conversations import transactions as conversations_tx
from hub.crashpoints import crash_point
from hub.errors import ChannelSendError, HubError
from hub.events import (
    MessageQueued,
    MessageReceived,
    NoteAdded,
    SlaBreached,
    SlaWarning,
    SystemEventAdded,
    TicketChanged,
    TicketOpened,
)
from hub.models import AuthorKind
from hub.slack import cards as slack_blocks
from hub.slack import jobs as slack_jobs
from hub.slack.commands import KbSearch, SlashCommands, absolute_link
from hub.slack.events import SlackInbound
from hub.slack.store import SOURCE, Snapshot, forget_events, snapshot, store_card, ticket_exists, unposted
from hub.slack.transport import SlackTransport
from hub.storage.schema import users
from hub.tickets import queries as tickets_queries
from hub.txhooks import After

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from hub.config import Settings
    from hub.conversations.service import HubService
    from hub.tickets.model import Ticket
    from hub.tickets.service import TicketService

log = logging.getLogger(__name__)

# A card (or a thread message) looked up at Slack before its job posts again:
# messages from the job's creation on (less this, for clocks apart), at most
# this many pages of 200.
CARD_LOOKUP_SKEW = timedelta(minutes=5)
CARD_LOOKUP_PAGES = 10


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
            lease_seconds=settings.slack_jobs_lease_seconds,
        )
        self.inbound = SlackInbound(channel, service, tickets, settings)
        self.commands = SlashCommands(app, channel, service, tickets, settings)
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: list[Callable[[], None]] = []

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        # First, before any await: work the ticket scheduler's first pass
        # does at start-up must find the hooks in place.
        hooks = self.service.tx_hooks
        self._unsubscribe = [
            hooks.add(TicketOpened, self._opened_tx),
            hooks.add(TicketChanged, self._changed_tx),
            hooks.add(SlaBreached, self._breach_tx),
            hooks.add(SlaWarning, self._warning_tx),
            hooks.add(MessageReceived, self._customer_message_tx),
            hooks.add(MessageQueued, self._outbound_tx),
            hooks.add(NoteAdded, self._note_tx),
            hooks.add(SystemEventAdded, self._system_line_tx),
        ]
        for ticket_id in await self.db.read(unposted):
            await self.db.write(
                slack_jobs.enqueue, "post_ticket", {}, ticket_id=ticket_id, dedup_key=f"post:{ticket_id}"
            )
        self.channel.attach(self)
        self.worker.start()
        self._spawn(self.service.periodically("slack-event-ids", 3600, self._forget_events), "slack-event-ids")

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

    async def _forget_events(self) -> None:
        """Event ids older than HUB_SLACK_EVENT_TTL_HOURS (Slack retries for an hour at most)."""
        await self.db.write(forget_events, timedelta(hours=self.settings.slack_event_ttl_hours))

    def submit(self, kind: str, body: dict[str, Any]) -> None:
        handler = {
            "event": self.inbound.on_event,
            "action": self.inbound.on_action,
            "command": self.commands.on_command,
            "shortcut": self.commands.on_shortcut,
            "view": self.commands.on_view,
        }[kind]
        self._spawn(handler(body), f"slack-{kind}")

    def use_kb_search(self, search: KbSearch) -> None:
        """``/hub search`` asks ``search`` instead of the hub's knowledge base."""
        self.commands.kb_search = search

    # --- hub -> Slack (queued in the cause's transaction: ``hub.txhooks``) -----------------
    async def _wake(self) -> None:
        self.worker.notify()

    def _enqueue(
        self,
        conn: Connection,
        kind: str,
        payload: dict[str, Any],
        *,
        ticket_id: int | None,
        coalesce: bool = False,
        dedup_key: str | None = None,
    ) -> After:
        slack_jobs.enqueue(conn, kind, payload, ticket_id=ticket_id, coalesce=coalesce, dedup_key=dedup_key)
        return self._wake

    def _opened_tx(self, conn: Connection, event: TicketOpened) -> After:
        return self._enqueue(conn, "post_ticket", {}, ticket_id=event.ticket_id, dedup_key=f"post:{event.ticket_id}")

    def _changed_tx(self, conn: Connection, event: TicketChanged) -> After:
        after = self._enqueue(conn, "update_ticket", {}, ticket_id=event.ticket_id, coalesce=True)
        if event.changes.get("priority") == "urgent":
            self._escalated(conn, event.ticket_id, event.at)
        team = event.changes.get("team")
        if isinstance(team, str) and team:
            self._enqueue(
                conn,
                "team_moved",
                {"team": team},
                ticket_id=event.ticket_id,
                dedup_key=f"team:{event.ticket_id}:{team}:{event.at.isoformat()}",
            )
        return after

    def _escalated(self, conn: Connection, ticket_id: int, at: datetime) -> None:
        """A ticket became urgent after its card went up: the card (and its
        thread) stays where it is, and the urgent channel gets a link to it."""
        if self.settings.slack_urgent_channel:
            self._enqueue(conn, "escalate", {}, ticket_id=ticket_id, dedup_key=f"escalate:{ticket_id}:{at.isoformat()}")

    def _breach_tx(self, conn: Connection, event: SlaBreached) -> After:
        label = "first response" if event.target == "first_response" else "resolution"
        channel = self.team_channels.get(event.team) or self.settings.slack_default_channel
        if channel:
            text = (
                f":warning: SLA breached on ticket #{event.ticket_id} ({label}); "
                f"now {event.priority}{' — unassigned' if event.assignee_id is None else ''}."
            )
            self._enqueue(
                conn,
                "notify",
                {"channel": channel, "text": text},
                ticket_id=None,
                dedup_key=f"breach:{event.ticket_id}:{event.target}:{event.at.isoformat()}",
            )
        after = self._enqueue(conn, "update_ticket", {}, ticket_id=event.ticket_id, coalesce=True)
        if event.priority == "urgent":
            self._escalated(conn, event.ticket_id, event.at)
        return after

    def _warning_tx(self, conn: Connection, event: SlaWarning) -> After | None:
        """Near the breach: a notice to the assignee (a DM to their Slack
        user), or to the team's channel when nobody has the ticket (or its
        agent has no Slack user), queued with the recorded warning."""
        slack_user = assignee = None
        if event.assignee_id is not None:
            found = conn.execute(
                sa.select(users.c.name, users.c.slack_user_id).where(users.c.id == event.assignee_id)
            ).first()
            if found is not None:
                assignee, slack_user = found.name, found.slack_user_id
        channel = slack_user or self.team_channels.get(event.team) or self.settings.slack_default_channel
        if not channel:
            log.warning("SLA warning on ticket %s: no Slack channel for team %r", event.ticket_id, event.team)
            return None
        label = "first response" if event.target == "first_response" else "resolution"
        due = f"<!date^{int(event.due_at.timestamp())}^{{date_short_pretty}} at {{time}}|{event.due_at:%Y-%m-%d %H:%M} UTC>"
        if slack_user:
            whom = "Your ticket"
        elif assignee:
            whom = f"{slack_blocks.escape(assignee)}'s ticket"
        else:
            whom = "Unassigned ticket"
        # No customer's name or words: this notice is not deleted with the card on an erasure.
        text = (
            f":hourglass_flowing_sand: {whom} #{event.ticket_id} ({event.priority}): the {label} is due {due}, "
            f"{self.settings.sla_warn_at:.0%} of its SLA used."
        )
        # The ticket's job: it runs after the card is up (to link it), and an
        # erasure of the ticket's contact takes it with the ticket's other jobs.
        return self._enqueue(
            conn,
            "sla_warning",
            {"channel": channel, "text": text, "target": event.target},
            ticket_id=event.ticket_id,
            dedup_key=f"sla-warning:{event.ticket_id}:{event.target}:{event.due_at.isoformat()}",
        )

    def _customer_message_tx(self, conn: Connection, event: MessageReceived) -> After | None:
        if event.handler != "human":
            return None  # no ticket yet: the card shows the last messages when it is posted
        ticket = tickets_queries.open_ticket_of(conn, event.conversation_id)
        if ticket is None:
            return None
        # The job names the message; its text is read when the job runs (an
        # erased customer's text is never copied into the queue).
        self._enqueue(
            conn,
            "thread",
            {"message_id": event.message_id},
            ticket_id=ticket.id,
            dedup_key=f"thread:{event.message_id}",
        )
        return self._enqueue(conn, "update_ticket", {}, ticket_id=ticket.id, coalesce=True)

    def _outbound_tx(self, conn: Connection, event: MessageQueued) -> After | None:
        if event.author_kind == AuthorKind.CUSTOMER.value:
            return None
        return self._mirror(conn, event.conversation_id, event.message_id, note=False)

    def _note_tx(self, conn: Connection, event: NoteAdded) -> After | None:
        return self._mirror(conn, event.conversation_id, event.message_id, note=True)

    def _system_line_tx(self, conn: Connection, event: SystemEventAdded) -> After | None:
        """What agents must see (a message not delivered, an opt-out), in the thread."""
        return self._mirror(conn, event.conversation_id, event.message_id, note=True, ticket_id=event.ticket_id)

    def _mirror(
        self, conn: Connection, conversation_id: int, message_id: int, *, note: bool, ticket_id: int | None = None
    ) -> After | None:
        """A reply or note written outside Slack, into the ticket's thread
        (what came from Slack itself is already there); ``ticket_id``: that
        ticket's thread, open or not."""
        if ticket_id is not None:
            ticket: Any = tickets_queries.get_ticket(conn, ticket_id)
        else:
            ticket = tickets_queries.open_ticket_of(conn, conversation_id)
        if ticket is None:
            return None
        message = conversations_tx.get_message(conn, message_id)
        if message.meta.get("source") == SOURCE:
            return None
        return self._enqueue(
            conn,
            "thread",
            {"message_id": message_id, "note": note},
            ticket_id=ticket.id,
            dedup_key=f"thread:{message_id}",
        )

    async def _thread_text(self, payload: dict[str, Any]) -> str | None:
        """The thread message a job posts, from the message as it is now
        (None: erased since)."""
        if "text" in payload:  # a job queued before jobs named their message
            return str(payload["text"])
        try:
            message = await self.service.get_message(int(payload["message_id"]))
        except HubError:
            return None
        if message.author_kind == AuthorKind.CUSTOMER:
            contact = await self.service.get_contact(message.contact_id)
            return slack_blocks.mirrored_text(contact.name or "Customer", message.body)
        who = await self._author(message.author_kind, message.author_id)
        return slack_blocks.mirrored_text(who, message.body, note=bool(payload.get("note")))

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
                known = snap.users.get(message.author_id) if message.author_id is not None else None
                who = known[0] if known is not None else "Agent"
            else:
                who = names.get(message.author_kind.value, "Hub")
            last.append((who, message.body))
        assignee = None
        if ticket.assignee_id is not None:
            name, slack_id = snap.users.get(ticket.assignee_id, (f"user {ticket.assignee_id}", None))
            assignee = f"<@{slack_id}>" if slack_id else name
        customer = " · ".join(filter(None, [contact.name, contact.email, contact.phone])) or f"contact {contact.id}"
        if snap.opted_out:
            customer += " · opted out of " + ", ".join(snap.opted_out)
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
            kb_hits=[absolute_link(hit, self.settings.public_url) for hit in ticket.kb_hits if isinstance(hit, dict)],
            csat_rating=snap.csat_rating,
        )

    async def execute(self, job: slack_jobs.Job) -> None:
        if job.kind == "notify":
            await self.channel.call("chat.postMessage", channel=job.payload["channel"], text=job.payload["text"])
            return
        if job.kind == "erase_card":
            await self._erase_card(job.payload["channel"], job.payload["ts"])
            return
        if job.kind == "erase_message":
            await self._delete(job.payload["channel"], job.payload["ts"])
            return
        snap = await self.db.read(snapshot, job.ticket_id)
        ticket = snap.ticket
        if job.kind == "escalate":
            await self._announce_escalation(snap)
            return
        if job.kind == "sla_warning":
            await self._warn(snap, job.payload)
            return
        if job.kind == "team_moved":
            await self._announce_move(snap, str(job.payload["team"]))
            return
        if job.kind == "thread":
            if not ticket.slack_ts:
                raise ChannelSendError(f"ticket {ticket.id} has no Slack card yet", retryable=True)
            text = await self._thread_text(job.payload)
            if text is None:
                return  # the message was erased meanwhile
            posted = None
            if job.attempts > 1 or job.last_error is not None:
                # Run before: its message may be in the thread already (killed,
                # or Slack's answer lost, after the post went up). Not again.
                posted = await self._posted_thread_message(ticket, job)
                if posted is not None:
                    log.info("ticket %s: thread message %s was posted by an earlier run", ticket.id, posted)
            if posted is None:
                data = await self.channel.call(
                    "chat.postMessage",
                    channel=ticket.slack_channel,
                    thread_ts=ticket.slack_ts,
                    text=text,
                    metadata=slack_blocks.thread_post_metadata(job.id),
                )
                crash_point("slack-thread-posted")  # tests: up at Slack, the job not marked done
                posted = str(data["ts"])
            if not await self.db.read(ticket_exists, ticket.id):
                # Erased while this went up: the erasure's job may have read
                # the thread before it, so this message is deleted on its own.
                await self.db.write(slack_jobs.enqueue_erase, ticket.slack_channel, posted, thread=False)
                self.worker.notify()
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
        if job.attempts > 1 or job.last_error is not None:
            # Run before: its card may be up at Slack with the ts never stored
            # (killed between Slack's answer and the write). Adopt it, as it is now.
            found = await self._posted_card(ticket, since=job.created_at)
            if found is not None:
                channel, ts = found
                log.info("ticket %s: adopting its card %s/%s posted by an earlier run", ticket.id, channel, ts)
                await self.channel.call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)
                await self.db.write(store_card, ticket.id, channel, ts)
                self.worker.notify()
                return
        channel = self.channel_for(ticket)
        metadata = slack_blocks.card_metadata(ticket.id)
        data = await self.channel.call("chat.postMessage", channel=channel, text=text, blocks=blocks, metadata=metadata)
        crash_point("slack-card-posted")  # tests: up at Slack, its ts not stored
        await self.db.write(store_card, ticket.id, data.get("channel") or channel, data["ts"])
        self.worker.notify()  # in case its ticket was erased meanwhile: the card's deletion is queued

    async def _posted_card(self, ticket: Ticket, *, since: datetime) -> tuple[str, str] | None:
        """The card of ``ticket`` already in a channel it may have gone to
        (its metadata names the ticket), posted since ``since``: (channel, ts).
        Bounded (``CARD_LOOKUP_PAGES``): past that, the job posts again."""
        first = self.channel_for(ticket)
        team = self.team_channels.get(ticket.team) or self.settings.slack_default_channel
        candidates = dict.fromkeys(c for c in (first, team, self.settings.slack_urgent_channel) if c)
        oldest = f"{(since - CARD_LOOKUP_SKEW).timestamp():.6f}"
        for channel in candidates:
            listing = self._listed(
                "conversations.history", CARD_LOOKUP_PAGES, channel=channel, oldest=oldest, include_all_metadata="true"
            )
            async for message in listing:
                if slack_blocks.card_ticket_id(message) == ticket.id and message.get("ts"):
                    return channel, str(message["ts"])
        return None

    async def _posted_thread_message(self, ticket: Ticket, job: slack_jobs.Job) -> str | None:
        """The ts of the message ``job`` already posted in ``ticket``'s thread
        (its metadata names the job), or None. Bounded (``CARD_LOOKUP_PAGES``):
        past that, the job posts again."""
        oldest = f"{(job.created_at - CARD_LOOKUP_SKEW).timestamp():.6f}"
        listing = self._listed(
            "conversations.replies",
            CARD_LOOKUP_PAGES,
            channel=ticket.slack_channel,
            ts=ticket.slack_ts,
            oldest=oldest,
            include_all_metadata="true",
        )
        async for message in listing:
            if slack_blocks.thread_post_job_id(message) == job.id and message.get("ts"):
                return str(message["ts"])
        return None

    async def _listed(self, method: str, pages: int | None = None, **args: Any) -> AsyncIterator[dict[str, Any]]:
        """The messages of a Slack listing (``conversations.history`` or
        ``conversations.replies``), 200 a page through its cursor, at most
        ``pages`` pages (None: all); a thread or message gone lists nothing."""
        cursor, page = None, 0
        while pages is None or page < pages:
            page += 1
            call: dict[str, Any] = {**args, "limit": 200}
            if cursor:
                call["cursor"] = cursor
            try:
                data = await self.channel.call(method, http_get=True, **call)
            except ChannelSendError as err:
                if "thread_not_found" in err.message or "message_not_found" in err.message:
                    return
                raise
            for message in data.get("messages") or []:
                yield message
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    async def _erase_card(self, channel: str, ts: str) -> None:
        """An erased contact's card: the hub's own messages in its thread, then
        the card itself, deleted (``chat.delete``; a bot token deletes what the
        bot posted). Agents' own thread replies are theirs: a workspace admin
        removes those (the README says so)."""
        mine = [
            str(m["ts"])
            async for m in self._listed("conversations.replies", channel=channel, ts=ts)
            if m.get("bot_id") and m.get("ts") != ts
        ]
        for message_ts in [*mine, ts]:
            await self._delete(channel, message_ts)

    async def _delete(self, channel: str, ts: str) -> None:
        try:
            await self.channel.call("chat.delete", channel=channel, ts=ts)
        except ChannelSendError as err:
            if "message_not_found" not in err.message:
                raise  # retried by the queue; gone already is done

    async def _warn(self, snap: Snapshot, payload: dict[str, Any]) -> None:
        """An SLA warning, unless its target was met or the ticket resolved
        while it waited (Slack down); with a link to the card when it is up."""
        ticket = snap.ticket
        if ticket.status.value != "open":
            return
        if payload.get("target") == "first_response" and ticket.first_response_at is not None:
            return
        text = str(payload["text"])
        permalink = await self._card_permalink(ticket)
        if permalink:
            text += f" <{permalink}|Open the ticket>"
        await self.channel.call("chat.postMessage", channel=payload["channel"], text=text, unfurl_links=False)

    async def _card_permalink(self, ticket: Ticket) -> str | None:
        """A link to the ticket's card, for notices elsewhere (None: no card yet, or Slack gave none)."""
        if not (ticket.slack_ts and ticket.slack_channel):
            return None
        data = await self.channel.call(
            "chat.getPermalink", http_get=True, channel=ticket.slack_channel, message_ts=ticket.slack_ts
        )
        return data.get("permalink") or None

    async def _announce_escalation(self, snap: Snapshot) -> None:
        ticket, urgent = snap.ticket, self.settings.slack_urgent_channel
        if not urgent or ticket.priority.value != "urgent" or ticket.status.value == "resolved":
            return  # changed again since, or nowhere to announce it
        if not ticket.slack_ts or ticket.slack_channel == urgent:
            return  # no card yet (it will be posted to the urgent channel) or already there
        permalink = await self._card_permalink(ticket)
        card = self.card(snap)
        where = f"<{permalink}|the ticket's card>" if permalink else f"the card in <#{ticket.slack_channel}>"
        text = (
            # No customer name here: this notice is not deleted with the card
            # when the contact is erased.
            f":rotating_light: Ticket #{ticket.id} is now *urgent* ({card.channel}). Work it in the thread of {where}."
        )
        await self.channel.call("chat.postMessage", channel=urgent, text=text, unfurl_links=False)

    async def _announce_move(self, snap: Snapshot, team: str) -> None:
        """A ticket moved to ``team``: its channel is told, with a link to the
        card (the card and its thread stay where they are, as on an escalation)."""
        ticket = snap.ticket
        if ticket.team != team or ticket.status.value == "resolved":
            return  # moved on again since, or done with
        if not ticket.slack_ts:
            return  # no card yet: it goes up in the team's channel (``channel_for``)
        channel = self.team_channels.get(team) or self.settings.slack_default_channel
        if not channel or channel == ticket.slack_channel:
            return  # the card is in that channel already
        permalink = await self._card_permalink(ticket)
        where = f"<{permalink}|its card>" if permalink else f"its card in <#{ticket.slack_channel}>"
        # No customer's name or words: this notice is not deleted with the card on an erasure.
        text = (
            f":arrow_right: Ticket #{ticket.id} ({ticket.priority.value}) moved to team *{slack_blocks.escape(team)}*"
            f"{' — unassigned' if ticket.assignee_id is None else ''}. Work it in the thread of {where}."
        )
        await self.channel.call("chat.postMessage", channel=channel, text=text, unfurl_links=False)


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
