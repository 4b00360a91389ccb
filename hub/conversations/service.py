"""The hub's use cases: what channels, the API, the bot and Slack call.

Each method runs its transaction through the ``Database``, builds its domain
event inside it and runs the in-transaction hooks (``tx_hooks``: the work
other features must do because of it, committed with it), then publishes the
event after the commit as a notification.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub import attachments as attachments_tx
from hub.attachments import AttachmentStore
from hub.audit import Audit, audited, record
from hub.bus import EventBus
from hub.conversations import consent, timeline
from hub.conversations import contacts as contacts_tx
from hub.conversations import delivery as delivery_tx
from hub.conversations import ingest as ingest_tx
from hub.conversations import transactions as conversations_tx
from hub.errors import Forbidden, InvalidInput
from hub.events import (
    AgentTyping,
    ContactErased,
    ContactsMerged,
    ConversationUpdated,
    DeliveryUpdated,
    MessageQueued,
    MessageReceived,
    NoteAdded,
    SystemEventAdded,
    utcnow,
)
from hub.leases import NamedLeases, every
from hub.messages import ChannelAdapter, DeliveryReport, InboundMessage, IngestResult, PushesTyping
from hub.metrics import Metrics
from hub.models import AuthorKind, Contact, Conversation, Message, MessageKind
from hub.storage import Database, insert_ignore, rows
from hub.storage.schema import channel_state, conversations, identities, messages
from hub.txhooks import After, TxHooks, run_afters

if TYPE_CHECKING:
    from hub.kb.suggestions import PhrasingSuggestions

log = logging.getLogger(__name__)

# (channel, address, survey id, rating, comment) -> (outcome, text): ``hub.csat``.
SurveyAnswerer = Callable[[str, str, int, int | None, str | None], Awaitable[tuple[str, str]]]

# An agent's "typing" reaches the customer at most this often per conversation
# (the console sends it as the agent types; the widget hides it after 10 s).
TYPING_INTERVAL = 2.0


class HubService:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        channels: dict[str, ChannelAdapter],
        metrics: Metrics,
        *,
        reopen_window: timedelta = timedelta(hours=72),
        agents_online: bool = True,
        attachments: AttachmentStore | None = None,
        leases: NamedLeases | None = None,
        bot_jobs: bool = False,
    ) -> None:
        self.db = db
        # Singleton loops of the channels (``hold_lease``); None: this is the only instance.
        self.leases = leases
        self.attachments = attachments
        self.bus = bus
        self.channels = channels
        self.metrics = metrics
        self.reopen_window = reopen_window
        # Called after a commit that queued outbound messages (the outbox
        # worker wakes up); registered with ``on_outbound_queued``.
        self._outbound_queued: list[Callable[[], None]] = []
        # HUB_WEBCHAT_AGENTS_ONLINE=true|false, until a duty roster is registered (auto).
        self._agents_online = agents_online
        self._duty_roster: Callable[[], Awaitable[bool]] | None = None
        # While a bot is attached (``attach_bot``), inbound messages of
        # bot-handled conversations get a durable bot job in their ingest
        # transaction, and ``on_bot_job`` wakes the bridge after the commit.
        # ``bot_jobs``: a bot answers from those jobs in this deployment, so
        # they are written from the start and until the end, attached or not:
        # a channel that takes messages outside HTTP (the SMTP server) may
        # take one while the bridge is still starting or already stopping,
        # and the next bridge (here after a restart, or another instance's)
        # answers it.
        self._bot_jobs = bot_jobs
        self.bot_enabled = bot_jobs
        self._surveys: SurveyAnswerer | None = None
        self.on_bot_job: Callable[[], None] = lambda: None
        # While phrasing suggestions run (``use_phrasings``), agents' replies and
        # the customers' votes on the bot's answers offer new article phrasings.
        self.phrasings: PhrasingSuggestions | None = None
        # Work that must happen because of an event, in the event's own
        # transaction (``hub.txhooks``); the ticket service shares them.
        self.tx_hooks = TxHooks()
        # conversation id -> when its customer was last told an agent types (monotonic).
        self._typing_shown: dict[int, float] = {}
        # The indicator goes through the bus: the visitor's socket may be held by another instance.
        bus.subscribe(AgentTyping, self._push_typing)

    # --- ChannelHost ---------------------------------------------------------
    async def ingest(self, inbound: InboundMessage) -> IngestResult:
        channel = self.channels.get(inbound.channel)
        kind = channel.address_kind if channel is not None else inbound.channel
        if not inbound.contact_hints and kind != "email":
            # A customer who answers the handoff's "what's your email?" with
            # the address: kept as an unverified contact detail
            # (``attributes.email_unverified``, in the message's transaction),
            # never as an identity: typing an address proves nothing, so it
            # must not merge this contact with the address's owner.
            typed = contacts_tx.typed_email(inbound.text)
            if typed is not None:
                inbound = dataclasses.replace(inbound, contact_hints={"email": typed}, hints_verified=False)
        done = await self.db.write(
            ingest_tx.ingest,
            inbound,
            identity_kind=kind,
            reopen_window=self.reopen_window,
            enqueue_bot=self.bot_enabled,
            on_stored=self._on_stored,
        )
        if done.duplicate:
            self.metrics.duplicates.labels(inbound.channel).inc()
        else:
            self.metrics.messages_in.labels(inbound.channel).inc()
            if self.bot_enabled:
                self.on_bot_job()
            for source_id in done.merged_contact_ids:
                await self.bus.publish(ContactsMerged(source_id=source_id, target_id=done.message.contact_id))
            await self.bus.publish(done.received)
            await run_afters(done.after)
        return IngestResult(message=done.message, conversation=done.conversation, duplicate=done.duplicate)

    def _on_stored(self, conn: Connection, inbound: InboundMessage, done: ingest_tx.Ingested) -> None:
        """In the ingest transaction, for each message stored: its event and hooks."""
        done.received = MessageReceived(
            message_id=done.message.id,
            conversation_id=done.conversation.id,
            contact_id=done.message.contact_id,
            channel=inbound.channel,
            body=inbound.text,
            new_conversation=done.new_conversation,
            metadata=inbound.metadata,
            handler=done.conversation.handler.value,
            answerable=ingest_tx.for_the_bot(inbound),
        )
        done.after.extend(self.tx_hooks.run(conn, done.received))
        if inbound.attachments:
            attachments_tx.link(conn, done.message.id, inbound.attachments)
        if inbound.consent or inbound.auto_reply:
            done.after.extend(self._keywords_tx(conn, inbound, done))

    def _keywords_tx(self, conn: Connection, inbound: InboundMessage, done: ingest_tx.Ingested) -> list[After]:
        """STOP/START/HELP (the bot does not answer them; ingest queued no bot job)."""
        lines, queued = consent.apply_keywords(conn, inbound, done.message, done.conversation, utcnow())
        afters = self._system_lines_tx(conn, lines)
        if queued is not None and not queued.repeated:
            afters.extend(self.queued_tx(conn, queued, AuthorKind.SYSTEM))
        return afters

    def queued_tx(self, conn: Connection, queued: conversations_tx.Queued, author_kind: AuthorKind) -> list[After]:
        """In the transaction that queued an outbound message (a keyword's
        answer, a CSAT survey): its ``MessageQueued`` hooks, and after the
        commit the outbox woken and the event published."""
        event = MessageQueued(
            message_id=queued.message.id,
            conversation_id=queued.conversation.id,
            contact_id=queued.conversation.contact_id,
            channel=queued.conversation.channel,
            author_kind=author_kind.value,
        )
        return [*self.tx_hooks.run(conn, event), self._after_queued(event)]

    def _system_lines_tx(self, conn: Connection, lines: Iterable[Message]) -> list[After]:
        afters: list[After] = []
        for line in lines:
            event = SystemEventAdded(
                message_id=line.id, conversation_id=line.conversation_id, event=str(line.meta.get("event", ""))
            )
            afters.extend(self.tx_hooks.run(conn, event))
        return afters

    def _after_queued(self, event: MessageQueued) -> After:
        async def wake() -> None:
            for hook in self._outbound_queued:
                hook()
            await self.bus.publish(event)

        return wake

    async def store_attachment(self, data: bytes, *, filename: str | None, content_type: str) -> dict[str, Any]:
        """``ChannelHost.store_attachment``: the bytes kept, their metadata returned."""
        if self.attachments is None:
            raise RuntimeError("the hub has no attachment store")
        return await self.attachments.store(data, filename=filename, content_type=content_type)

    async def was_erased(self, channel: str, external_id: str) -> bool:
        """``ChannelHost.was_erased``: that delivery belonged to an erased contact."""
        return await self.db.read(contacts_tx.was_erased, channel, external_id)

    async def channel_state(self, channel: str, key: str) -> str | None:
        return await self.db.read(
            lambda conn: conn.execute(
                sa.select(channel_state.c.value).where(channel_state.c.channel == channel, channel_state.c.key == key)
            ).scalar()
        )

    async def set_channel_state(self, channel: str, key: str, value: str) -> None:
        def store(conn: Connection) -> None:
            now = utcnow()
            stmt = insert_ignore(conn, channel_state).values(channel=channel, key=key, value=value, updated_at=now)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["channel", "key"], set_={"value": value, "updated_at": now})
            )

        await self.db.write(store)

    async def hold_lease(self, name: str) -> bool:
        """``ChannelHost.hold_lease`` (``hub.leases``)."""
        return True if self.leases is None else await self.leases.hold(name)

    async def release_lease(self, name: str) -> None:
        if self.leases is not None:
            await self.leases.release(name)

    @property
    def lease_seconds(self) -> float:
        return self.leases.seconds if self.leases is not None else float("inf")

    async def periodically(self, name: str, interval: float, work: Callable[[], Awaitable[object]]) -> None:
        """``work`` every ``interval`` seconds on one instance: the holder of
        the lease ``name`` (``hub.leases.every``; without leases, this one)."""
        lease = self.leases.lease(name) if self.leases is not None else None
        await every(interval, work, lease=lease, what=name)

    async def delivery_report(self, report: DeliveryReport) -> bool:
        """A provider's delivery status for a sent message (``ChannelHost``):
        the message moves forward; a failure puts the reason on the timeline
        (and in the Slack thread); an unsubscribed recipient is opted out."""

        def apply(conn: Connection) -> tuple[delivery_tx.Reported | None, list[After]]:
            now = utcnow()
            reported = delivery_tx.apply_report(conn, report, now)
            if reported is None:
                return None, []
            conversation = conversations_tx.get_conversation(conn, reported.conversation_id)
            if report.opted_out:
                consent.provider_opt_out(
                    conn,
                    contact_id=conversation.contact_id,
                    channel=report.channel,
                    address=conversations_tx.recipient_address(conn, conversation),
                    code=report.error_code,
                    now=now,
                )
            if not reported.newly_failed:
                return reported, []
            line = conversations_tx.add_event(
                conn,
                conversation,
                f"A message was not delivered: {reported.error}",
                event="delivery_failed",
                meta={"message_id": reported.message_id},
                now=now,
            )
            return reported, self._system_lines_tx(conn, [line])

        reported, afters = await self.db.write(apply)
        if reported is None:
            return False
        if reported.changed:
            await self.bus.publish(
                DeliveryUpdated(
                    message_id=reported.message_id,
                    conversation_id=reported.conversation_id,
                    status=reported.status,
                    error=reported.error,
                )
            )
        await run_afters(afters)
        return True

    async def conversation_for(self, channel: str, address: str) -> Conversation | None:
        def find(conn: Connection) -> Conversation | None:
            row = conn.execute(
                sa.select(conversations)
                .join(identities, identities.c.id == conversations.c.identity_id)
                .where(conversations.c.channel == channel, identities.c.address == address)
                .order_by(conversations.c.id.desc())
                .limit(1)
            ).first()
            return rows.conversation(row) if row is not None else None

        return await self.db.read(find)

    async def history(self, conversation_id: int, *, after_id: int | None = None, limit: int = 50) -> list[Message]:
        def load(conn: Connection) -> list[Message]:
            stmt = (
                sa.select(messages)
                .where(messages.c.conversation_id == conversation_id, messages.c.kind == MessageKind.MESSAGE.value)
                .order_by(messages.c.id.desc() if after_id is None else messages.c.id)
                .limit(limit)
            )
            if after_id is not None:
                stmt = stmt.where(messages.c.id > after_id)
            found = [rows.message(r) for r in conn.execute(stmt)]
            return found if after_id is not None else list(reversed(found))

        return await self.db.read(load)

    async def agents_online(self) -> bool:
        if self._duty_roster is not None:
            return await self._duty_roster()
        return self._agents_online

    # --- hooks -----------------------------------------------------------------
    def on_outbound_queued(self, hook: Callable[[], None]) -> None:
        self._outbound_queued.append(hook)

    def attach_bot(self, on_bot_job: Callable[[], None]) -> None:
        """Bot-handled conversations get bot jobs from now on; ``on_bot_job`` wakes the bridge."""
        self.bot_enabled = True
        self.on_bot_job = on_bot_job

    def attach_surveys(self, answer: SurveyAnswerer | None) -> None:
        """CSAT answers from the channels go to ``answer`` (``hub.csat``); None: no surveys."""
        self._surveys = answer

    async def answer_survey(
        self, channel: str, address: str, survey_id: int, rating: int | None, comment: str | None
    ) -> tuple[str, str]:
        """``ChannelHost.answer_survey``."""
        if self._surveys is None:
            raise Forbidden("surveys are off")
        return await self._surveys(channel, address, survey_id, rating, comment)

    def detach_bot(self) -> None:
        """Nothing to wake any more; no new bot jobs unless the deployment's
        bot answers them later (``bot_jobs``). Those stored stay, for the next start."""
        self.bot_enabled = self._bot_jobs
        self.on_bot_job = lambda: None

    def use_phrasings(self, phrasings: PhrasingSuggestions | None) -> None:
        """Agents' replies and bot votes feed ``phrasings`` (None: stop)."""
        self.phrasings = phrasings

    def use_duty_roster(self, anyone_on_duty: Callable[[], Awaitable[bool]]) -> None:
        """``agents_online`` asks the duty roster from now on (HUB_WEBCHAT_AGENTS_ONLINE=auto)."""
        self._duty_roster = anyone_on_duty

    # --- conversations -------------------------------------------------------
    async def get_conversation(self, conversation_id: int) -> Conversation:
        return await self.db.read(conversations_tx.get_conversation, conversation_id)

    async def list_conversations(self, **filters: Any) -> list[Conversation]:
        return await self.db.read(lambda conn: conversations_tx.list_conversations(conn, **filters))

    async def reply(
        self,
        conversation_id: int,
        text: str,
        *,
        author_kind: AuthorKind,
        author_id: int | None = None,
        idempotency_key: str | None = None,
        meta: dict[str, Any] | None = None,
        subject: str | None = None,
        audit: Audit | None = None,
    ) -> Message:
        """Queue a message to the customer on the conversation's own channel
        (``audit``: an agent's reply, recorded with it; ``subject``: an
        e-mail reply's own subject instead of the conversation's)."""

        def queue(conn: Connection) -> tuple[conversations_tx.Queued, MessageQueued, list[After]]:
            conversation = conversations_tx.get_conversation(conn, conversation_id)
            channel = self.channels.get(conversation.channel)
            if channel is not None and channel.max_text_len and len(text) > channel.max_text_len:
                raise InvalidInput(
                    f"reply is {len(text)} characters; {conversation.channel} allows {channel.max_text_len}"
                )
            to = conversations_tx.recipient_address(conn, conversation)
            queued = conversations_tx.queue_outbound(
                conn,
                conversation_id,
                text,
                author_kind=author_kind,
                author_id=author_id,
                to=to,
                idempotency_key=idempotency_key,
                meta=meta,
                subject=subject,
            )
            if author_kind == AuthorKind.AGENT and self.phrasings is not None:
                # A help-centre link after a handoff: the customer's question,
                # offered as a phrasing of that article, with the reply.
                self.phrasings.from_agent_reply(conn, queued.message)
            if audit is not None and not queued.repeated:  # a retried POST is not a second reply
                record(conn, audit, target_id=conversation_id, message_id=queued.message.id)
            event = MessageQueued(
                message_id=queued.message.id,
                conversation_id=queued.conversation.id,
                contact_id=queued.conversation.contact_id,
                channel=queued.conversation.channel,
                author_kind=author_kind.value,
            )
            return queued, event, self.tx_hooks.run(conn, event)

        queued, event, afters = await self.db.write(queue)
        for hook in self._outbound_queued:
            hook()
        await self.bus.publish(event)
        await run_afters(afters)
        return queued.message

    async def show_typing(self, conversation_id: int, active: bool) -> bool:
        """Show the customer that an agent is typing (``active``) or stopped,
        where their channel can (web chat: ``PushesTyping``); a start is sent
        at most every ``TYPING_INTERVAL`` seconds per conversation, to every
        instance (``AgentTyping`` on the bus: each pushes to the sockets it
        holds). True when the indicator was sent."""
        now = time.monotonic()
        if active and now - self._typing_shown.get(conversation_id, -TYPING_INTERVAL) < TYPING_INTERVAL:
            return False
        if not active and self._typing_shown.pop(conversation_id, None) is None:
            return False  # never shown: nothing to hide

        def address(conn: Connection) -> tuple[str, str | None]:
            conversation = conversations_tx.get_conversation(conn, conversation_id)
            if conversation.identity_id is None:
                return conversation.channel, None
            return conversation.channel, conversations_tx.recipient_address(conn, conversation)

        channel_name, to = await self.db.read(address)
        channel = self.channels.get(channel_name)
        if to is None or not isinstance(channel, PushesTyping):
            return False
        if active:
            if len(self._typing_shown) > 10_000:  # agents who closed the tab mid-word
                self._typing_shown = {k: t for k, t in self._typing_shown.items() if now - t < 60}
            self._typing_shown[conversation_id] = now
        await self.bus.publish(AgentTyping(conversation_id=conversation_id, channel=channel_name, to=to, active=active))
        return True

    async def _push_typing(self, event: AgentTyping) -> None:
        channel = self.channels.get(event.channel)
        if isinstance(channel, PushesTyping):
            await channel.push_typing(event.to, event.active, author="agent")

    async def suggest_phrasing(self, payloads: Iterable[dict[str, Any]], *, conversation_id: int) -> None:
        """The bot's custom payloads of one turn: a customer's helpful vote on
        an answer (``kb_feedback``) offers their question as a new phrasing of
        the article to an admin (``hub.kb.suggestions``); other payloads are ignored."""
        if self.phrasings is not None:
            await self.phrasings.from_bot_feedback(payloads, conversation_id=conversation_id, now=utcnow())

    async def add_note(
        self, conversation_id: int, text: str, *, author_id: int | None, audit: Audit | None = None
    ) -> Message:
        def add(conn: Connection) -> tuple[Message, NoteAdded, list[After]]:
            note = conversations_tx.add_note(conn, conversation_id, text, author_id=author_id)
            if audit is not None:
                record(conn, audit, target_id=conversation_id, message_id=note.id)
            event = NoteAdded(message_id=note.id, conversation_id=conversation_id, author_id=author_id)
            return note, event, self.tx_hooks.run(conn, event)

        note, event, afters = await self.db.write(add)
        await self.bus.publish(event)
        await run_afters(afters)
        return note

    async def update_conversation(
        self,
        conversation_id: int,
        changes: dict[str, Any],
        *,
        actor_id: int | None = None,
        audit: Audit | None = None,
    ) -> Conversation:
        def update(conn: Connection) -> tuple[Conversation, ConversationUpdated | None, list[After]]:
            conversation, applied = conversations_tx.update_conversation(
                conn, conversation_id, changes, actor_id=actor_id
            )
            if not applied:  # nothing changed: nothing to audit
                return conversation, None, []
            if audit is not None:
                record(
                    conn, audit, target_id=conversation_id, changes={k: v for k, v in applied.items() if k != "subject"}
                )
            event = ConversationUpdated(conversation_id=conversation_id, changes=applied, actor_id=actor_id)
            return conversation, event, self.tx_hooks.run(conn, event)

        conversation, event, afters = await self.db.write(update)
        if event is not None:
            await self.bus.publish(event)
            await run_afters(afters)
            if afters:  # a hook changed it further (a resolve gives it back to the bot)
                conversation = await self.get_conversation(conversation_id)
        return conversation

    async def get_message(self, message_id: int) -> Message:
        return await self.db.read(conversations_tx.get_message, message_id)

    async def timeline(self, **kwargs: Any) -> timeline.Page:
        return await self.db.read(lambda conn: timeline.page(conn, **kwargs))

    # --- contacts --------------------------------------------------------------
    async def get_contact(self, contact_id: int) -> Contact:
        return await self.db.read(contacts_tx.get_contact, contact_id)

    async def opt_outs(self, contact_id: int) -> list[dict[str, Any]]:
        """The channels a contact's addresses opted out of (SMS STOP), with why and since when."""
        return await self.db.read(consent.of_contact, contact_id)

    async def search_contacts(
        self, query: str | None, *, limit: int = 50, after_id: int | None = None
    ) -> list[Contact]:
        return await self.db.read(lambda conn: contacts_tx.search_contacts(conn, query, limit=limit, after_id=after_id))

    async def update_contact(self, contact_id: int, changes: dict[str, Any], *, audit: Audit | None = None) -> Contact:
        return await self.db.write(audited(contacts_tx.update_contact, audit), contact_id, changes)

    async def merge_contacts(
        self, source_id: int, target_id: int, *, actor_id: int | None = None, audit: Audit | None = None
    ) -> Contact:
        merged = await self.db.write(
            audited(
                lambda conn: contacts_tx.merge_contacts(
                    conn, source_id=source_id, target_id=target_id, actor_id=actor_id, reason="merged by an agent"
                ),
                audit,
            )
        )
        await self.bus.publish(ContactsMerged(source_id=source_id, target_id=target_id))
        return merged

    async def export_contact(self, contact_id: int, *, audit: Audit | None = None) -> dict[str, Any]:
        if audit is None:
            return await self.db.read(contacts_tx.export_contact, contact_id)
        return await self.db.write(audited(contacts_tx.export_contact, audit), contact_id)

    async def erase_contact(self, contact_id: int, *, audit: Audit | None = None) -> dict[str, int]:
        files = await self.db.read(attachments_tx.held_by_contact, contact_id)
        counts = await self.db.write(
            audited(contacts_tx.erase_contact, audit, lambda counts: {"deleted": counts}), contact_id
        )
        if self.attachments is not None:  # their files, unless another message holds them
            await self.attachments.sweep(only=files)
        await self.bus.publish(ContactErased(contact_id=contact_id))
        return counts

    # --- audit -----------------------------------------------------------------
    async def audit(self, entry: Audit) -> None:
        """Record an action that changes no row of the hub's own (a knowledge
        base re-index); every other action records with its change (``hub.audit``)."""
        await self.db.write(lambda conn: record(conn, entry))
