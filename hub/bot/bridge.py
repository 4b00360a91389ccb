"""Between customers and the Rasa bot.

Every inbound message of a bot-handled conversation gets a ``bot_jobs`` row
in its ingest transaction. This worker claims the jobs (one at a time per
conversation: Rasa's lock store lives in one process, and answers must stay
in order), sends the text to Rasa's REST channel with the conversation id as
``sender``, stores the bot's replies on the timeline and queues them in the
outbox for the customer's own channel.

- A ``{"custom": {"handoff": true, "priority", "reason"}}`` answer hands the
  conversation to humans: the ticket is opened and routed, and its Slack
  card queued, in the same transaction that sets ``handler=human`` (a crash
  cannot leave a conversation nobody owns; a second handoff raises the open
  ticket's priority, never opens another ticket). The bot's own
  handoff text stays neutral; the hub appends what it can promise (who is on
  duty, when the team is back, whether the reply also comes by email:
  ``hub.bot.promise``).
- When an agent resolves a handed-off conversation, the bot takes it back and
  a durable "resume" job un-pauses Rasa's tracker, both in the resolving
  transaction (an in-transaction hook, ``hub.txhooks``).
- Rasa down or slow: time out (HUB_RASA_TIMEOUT), retry once, then fall back:
  a message the triage's own signals find urgent (they need no Rasa) is
  handed off as urgent; otherwise answer from the knowledge base when it is
  confident, otherwise hand off.
  ``/readyz`` and the ``hub_degraded{component="rasa"}`` gauge show it.
  A customer message is never dropped nor left unanswered.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from bot.actions import messages as bot_messages
from bot.actions.routing import HANDOFF_PRIORITY, urgent_signals
from bot.client import BotTurn, RasaClient
from hub.bot.promise import Promise, handoff_promise
from hub.bot.triage import Triage
from hub.conversations import transactions as conversations_tx
from hub.conversations.service import HubService
from hub.errors import ChannelSendError, NotFound, Unavailable
from hub.events import Clock, ConversationUpdated, utcnow
from hub.jobs.queue import Queue, QueueSpec
from hub.jobs.worker import JobWorker
from hub.metrics import Metrics
from hub.models import AuthorKind, Conversation, Handler, Message, Priority
from hub.storage import Database
from hub.storage.schema import bot_jobs
from hub.tickets.sla import BusinessHours
from hub.txhooks import After

if TYPE_CHECKING:
    from hub.tickets.service import TicketService

log = logging.getLogger(__name__)

KBSearch = Callable[[str, int], Awaitable[Any]]  # (query, k) -> knowledge_base.SearchResult

# The handoff promise (hub.bot.promise) follows it in the same message.
FALLBACK_HANDOFF_TEXT = (
    "Thanks for your message! Our assistant is unavailable right now, so I've passed your conversation to our team."
)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    conversation_id: int | None  # None: a "forget" job, its conversation erased
    message_id: int | None
    kind: str
    attempts: int
    sender: str | None = None


# An answer that fails is logged and dropped (the fallback has already
# answered, or the conversation is gone); a resume retries, then gives up; a
# forget retries, then goes dead for an admin to requeue.
BOT_JOBS: Queue[Job] = Queue(
    QueueSpec("bot", bot_jobs, group="conversation_id", item=Job, noun="bot job", running="running")
)


def enqueue_resume(conn: Connection, conversation_id: int) -> None:
    BOT_JOBS.enqueue(conn, {"conversation_id": conversation_id, "message_id": None, "kind": "resume"}, utcnow())


def enqueue_forget(conn: Connection, conversation_id: int) -> None:
    """In an erasure's transaction: empty the conversation's Rasa tracker
    later, durably (the job keeps the Rasa sender id, not the conversation)."""
    BOT_JOBS.enqueue(
        conn,
        {"conversation_id": None, "message_id": None, "kind": "forget", "sender": str(conversation_id)},
        utcnow(),
    )


def _summarise(text: str, limit: int = 300) -> str:
    """The first sentences of a passage, up to ``limit`` characters, never mid-word."""
    text = re.sub(r"\s+", " ", re.sub(r"[#*_`>]+", " ", text)).strip()
    sentences = re.split(r"(?<=[.!?])\s+", text)
    summary = ""
    for sentence in sentences[:3]:
        if len(summary) + len(sentence) + 1 > limit:
            break
        summary = f"{summary} {sentence}".strip()
    if not summary:
        summary = text[:limit].rsplit(" ", 1)[0] + "…"
    return summary


# The subject line is read with a message of at most this many words. A longer one says what it
# asks: on the development help centres' long e-mails (130-280 words; bench/bot_domains.py --long),
# reading their subject lines too answered 39 rather than 41 of 84 questions at once, and 8 rather
# than 6 of 112 wrongly. 30 words: the length of the help-centre sets' questions (95th percentile 29).
SUBJECT_READ_UP_TO_WORDS = 30
# "Re:", "Fwd:" and their kin, repeated: the subject is read without them.
_SUBJECT_PREFIX = re.compile(r"^(?:\s*(?:re|fwd?|aw|wg|sv|vs|antw|tr|ref)\s*(?:\[\d+\])?\s*:)+", re.IGNORECASE)


class BotBridge(JobWorker[Job]):
    def __init__(
        self,
        service: HubService,
        db: Database,
        rasa: RasaClient,
        metrics: Metrics,
        *,
        kb_search: KBSearch | None = None,
        public_url: str = "",
        confidence_threshold: float = 0.5,
        triage: Triage | None = None,
        hours: BusinessHours | None = None,
        clock: Clock | None = None,
        tickets: TicketService | None = None,
        concurrency: int = 20,
        lease_seconds: float = 60.0,
        poll_interval: float = 1.0,
        max_attempts: int = 5,
    ) -> None:
        self.service = service
        self.db = db
        self.rasa = rasa
        self.metrics = metrics
        self.kb_search = kb_search
        self.public_url = public_url.rstrip("/")
        self.confidence_threshold = confidence_threshold
        self.triage = triage
        self.hours = hours  # HUB_SLA_BUSINESS_HOURS: when the team is back, for the handoff promise
        self.clock = clock or Clock()
        self.tickets = tickets  # opens the handoff's ticket (None: a hub without tickets)
        super().__init__(
            db,
            BOT_JOBS,
            self._run_job,
            name="bot-bridge",
            max_attempts=max_attempts,
            base_delay=1.0,
            max_delay=60.0,
            lease_seconds=lease_seconds,
            concurrency=concurrency,
            poll_interval=poll_interval,
            claim_batch=2,
        )
        self.degraded = False
        self.last_error: str | None = None
        # Why Rasa must not be asked now (``hold``): a Rasa this hub did not
        # start holds its port, or this hub's own is still starting after it
        # left. Customers get fallback answers meanwhile, never a stranger's.
        self.held: str | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # --- life cycle ---------------------------------------------------------------
    def start(self) -> None:
        self.service.attach_bot(self.notify)
        self._unsubscribe = self.service.tx_hooks.add(ConversationUpdated, self._resolved_tx)
        super().start()

    async def stop(self, timeout: float = 10.0) -> None:
        self.service.detach_bot()
        if self._unsubscribe is not None:
            self._unsubscribe()
        await super().stop(timeout)

    def health(self) -> dict[str, Any]:
        if not self.running:  # Rasa is still loading or warming up; replies wait
            return {"ok": False, "mode": "starting"}
        if self.held is not None:
            return {"ok": False, "mode": "starting", "error": self.held}
        if self.degraded:
            return {"ok": False, "mode": "fallback", "error": self.last_error}
        return {"ok": True}

    def unavailable(self, reason: str) -> None:
        """Rasa is known not to answer (not up within HUB_RASA_READY_WAIT): it is still
        asked, with fallback answers on errors, and ``/readyz`` says why until it answers."""
        self._set_degraded(True, reason)

    def available(self) -> None:
        self._set_degraded(False)

    def hold(self, reason: str) -> None:
        """Answer in fallback mode without asking Rasa, until ``release``."""
        self.held = reason

    def release(self) -> None:
        self.held = None

    def _set_degraded(self, degraded: bool, error: str | None = None) -> None:
        if degraded != self.degraded:
            log.warning("Rasa %s", f"unavailable, answering in fallback mode: {error}" if degraded else "is back")
        self.degraded = degraded
        self.last_error = error if degraded else None
        self.metrics.degraded.labels("rasa").set(1 if degraded else 0)

    async def _run_job(self, job: Job) -> None:
        try:
            if job.kind == "resume":
                await self.rasa.resume(str(job.conversation_id))
            elif job.kind == "forget":
                await self.rasa.forget(str(job.sender))
            else:
                await self._answer(job)
        except NotFound:
            pass  # the conversation or message was erased meanwhile
        except Exception as err:
            # A forget is an erasure's promise: retried, then dead (listed and
            # requeued by an admin), never dropped. A resume retries, then gives up.
            if job.kind == "forget" or (job.kind == "resume" and job.attempts < self.max_attempts):
                raise ChannelSendError(f"{type(err).__name__}: {err}", retryable=True) from err
            log.exception("bot job %s failed for good", job.id)

    # --- answering ---------------------------------------------------------------
    async def _answer(self, job: Job) -> None:
        assert job.message_id is not None and job.conversation_id is not None
        conversation = await self.service.get_conversation(job.conversation_id)
        if conversation.handler != Handler.BOT:
            return  # humans took over after this message was queued
        message = await self.service.get_message(job.message_id)
        contact = await self.service.get_contact(message.contact_id)
        metadata = {
            "channel": conversation.channel,
            "contact_id": contact.id,
            "conversation_id": conversation.id,
            "tier": str(contact.attributes.get("tier", "standard")),
        }
        text = await self._read(conversation, message)
        triage: dict[str, Any] | None = None
        if self.triage is not None:
            try:
                # Held (restarting, a stranger on its port): Rasa is not asked, by the triage either.
                triage = await self.triage(text, rasa=self.held is None)
            except Exception:
                log.exception("triage failed for message %s", message.id)
            else:
                metadata["triage"] = triage
                # A wrapped or misspelt message goes to Rasa as the search reads it: "Hello there,
                # <a request> Have a nice day :)" is not small talk (``hub.bot.triage``).
                text = str(triage.get("searched") or text)
        turn = await self._ask_rasa(conversation, text, metadata)
        if turn is None:
            await self._fallback(conversation, message, text, triage)
            return
        try:
            await self._apply(turn, conversation, message)
        except NotFound:
            # Erased while Rasa was being asked: the erasure's own forget job
            # may have run before Rasa stored this text, so empty it once more.
            await self.db.write(enqueue_forget, conversation.id)
            self.notify()
            raise

    async def _ask_rasa(self, conversation: Conversation, text: str, metadata: dict[str, Any]) -> BotTurn | None:
        if self.held is not None:
            return None  # the fallback answers
        sender = str(conversation.id)
        error: Exception | None = None
        for _attempt in range(2):  # one retry
            try:
                turn = await self.rasa.send(sender, text, metadata)
            except Unavailable as err:
                error = err
                continue
            if not turn.texts and not turn.custom:
                # A paused tracker (a resume that never reached Rasa) answers
                # nothing; the hub says the bot is in charge, so resume and ask again.
                await self.rasa.resume(sender)
                turn = await self.rasa.send(sender, text, metadata)
            self._set_degraded(False)
            return turn
        self._set_degraded(True, str(error))
        return None

    async def _apply(self, turn: BotTurn, conversation: Conversation, message: Message) -> None:
        kb = turn.kb
        handoff = turn.handoff
        meta: dict[str, Any] = {"in_reply_to": message.id}
        if kb is not None:
            meta["kb_hits"] = kb.get("kb_hits", [])
            meta["confidence"] = kb.get("confidence")
        decision = turn.decision
        if decision is not None:
            meta["decision"] = decision  # what the bot did, which article, which urgency signals fired
        texts = list(turn.texts)
        if handoff is not None:
            meta["handoff"] = True  # the chat widget switches to offline mode if nobody is on duty
            promise = await self.promise(conversation)
            meta["promise"] = promise.to_meta()
            # The bot says it passes the conversation on; the hub says what
            # follows, in the same message (alone when the bot said nothing).
            if texts:
                texts[-1] = f"{texts[-1]} {promise.text}"
            else:
                texts.append(promise.text)
        for index, text in enumerate(texts):
            await self.service.reply(
                conversation.id,
                text,
                author_kind=AuthorKind.BOT,
                idempotency_key=f"bot:{message.id}:{index}",
                meta=meta,
            )
        if handoff is not None:
            await self.handoff(
                conversation,
                priority=str(handoff.get("priority", "normal")),
                reason=str(handoff.get("reason", "handoff")),
                source="bot",
                kb_hits=list(handoff.get("kb_hits") or meta.get("kb_hits") or []),
            )
        await self.service.suggest_phrasing(
            turn.custom, conversation_id=conversation.id
        )  # last: a vote matters less than the above

    async def _read(self, conversation: Conversation, message: Message) -> str:
        """What the bot reads of ``message``: its text, after the conversation's subject (without
        "Re:" or "Fwd:") when the message opened the conversation and is short: a short e-mail may
        leave its question to the subject line ("Can't log in" / "It says wrong code, help"). The
        timeline keeps the text as written."""
        subject = _SUBJECT_PREFIX.sub("", conversation.subject or "").strip()
        if not subject or len(message.body.split()) > SUBJECT_READ_UP_TO_WORDS:
            return message.body
        if subject.casefold() in message.body.casefold():  # nothing the text does not say
            return message.body
        first = await self.service.history(conversation.id, after_id=0, limit=1)
        return f"{subject}\n{message.body}" if first and first[0].id == message.id else message.body

    async def _fallback(
        self, conversation: Conversation, message: Message, text: str, triage: dict[str, Any] | None = None
    ) -> None:
        """Rasa did not answer: a message urgent by the triage's signals, which need no Rasa (the
        examples, the classifier, the admin's rules, the safety phrases; combined as the bot
        combines them, ``bot.actions.routing.urgent_signals``), goes to a person as urgent;
        otherwise the knowledge base's confident answer to ``text`` (the message as the search
        reads it, when the triage read it so), else a promise that a person will."""
        signals = urgent_signals({"metadata": {"triage": triage}}) if triage else ()
        if signals:
            priority, reason = HANDOFF_PRIORITY["urgent_issue"]
            await self._fallback_handoff(conversation, message, priority, reason, signals=signals)
            return
        result = None
        if self.kb_search is not None:
            try:
                result = await self.kb_search(text, 3)
            except Exception:
                log.exception("knowledge base search failed in fallback")
        if result is not None and result.hits and result.confidence >= self.confidence_threshold:
            best = result.hits[0]
            text = f"{_summarise(best.text)}\n\nRead more: {self.public_url}{best.url}"
            await self.service.reply(
                conversation.id,
                text,
                author_kind=AuthorKind.BOT,
                idempotency_key=f"bot:{message.id}:fallback",
                meta={
                    "in_reply_to": message.id,
                    "fallback": True,
                    "confidence": result.confidence,
                    "kb_hits": [h.to_dict() for h in result.hits],
                },
            )
            return
        kb_hits = [h.to_dict() for h in result.hits] if result is not None else []
        await self._fallback_handoff(conversation, message, "normal", "assistant unavailable", kb_hits=kb_hits)

    async def _fallback_handoff(
        self,
        conversation: Conversation,
        message: Message,
        priority: str,
        reason: str,
        *,
        signals: tuple[str, ...] = (),
        kb_hits: list[dict[str, Any]] | None = None,
    ) -> None:
        """The fallback's handoff: says so, with what the hub can promise (and the help line when a
        safety phrase fired), then hands off with ``priority``."""
        promise = await self.promise(conversation)
        said = f"{FALLBACK_HANDOFF_TEXT} {promise.text}"
        if "safety" in signals:
            said = f"{said} {bot_messages.SAFETY}"
        meta: dict[str, Any] = {"in_reply_to": message.id, "fallback": True, "handoff": True}
        if signals:
            meta.update(priority=priority, signals=list(signals))
        meta["promise"] = promise.to_meta()
        await self.service.reply(
            conversation.id,
            said,
            author_kind=AuthorKind.BOT,
            idempotency_key=f"bot:{message.id}:fallback",
            meta=meta,
        )
        await self.handoff(conversation, priority=priority, reason=reason, source="fallback", kb_hits=kb_hits or [])

    async def promise(self, conversation: Conversation) -> Promise:
        """What a handoff of ``conversation`` may promise now (``hub.bot.promise``)."""
        contact = await self.service.get_contact(conversation.contact_id)
        email = contact.email or contact.attributes.get("email_unverified")
        return handoff_promise(
            on_duty=await self.service.agents_online(),
            now=self.clock.now(),
            hours=self.hours,
            channel=conversation.channel,
            email=str(email) if email else None,
        )

    async def handoff(
        self, conversation: Conversation, *, priority: str, reason: str, source: str, kb_hits: list[dict[str, Any]]
    ) -> None:
        """One transaction: the conversation goes to humans with its ticket
        opened and routed (``TicketService.open``; it never lowers priority)."""
        try:
            Priority(priority)
        except ValueError:
            priority = Priority.NORMAL.value
        if self.tickets is not None:
            await self.tickets.open(conversation.id, priority=priority, reason=reason, source=source, kb_hits=kb_hits)
            return
        changes: dict[str, Any] = {"handler": Handler.HUMAN.value}
        current = await self.service.get_conversation(conversation.id)
        if Priority(priority).more_urgent_than(current.priority):
            changes["priority"] = priority
        await self.service.update_conversation(conversation.id, changes)

    def _resolved_tx(self, conn: Connection, event: ConversationUpdated) -> After | None:
        """Resolved by an agent, in that transaction: the bot takes the
        conversation back and a resume job un-pauses Rasa's tracker."""
        if event.changes.get("status") != "resolved":
            return None
        conversation = conversations_tx.get_conversation(conn, event.conversation_id)
        if conversation.handler != Handler.HUMAN:
            return None
        _, applied = conversations_tx.update_conversation(
            conn, conversation.id, {"handler": Handler.BOT.value}, actor_id=event.actor_id
        )
        enqueue_resume(conn, conversation.id)
        changed = ConversationUpdated(conversation_id=conversation.id, changes=applied, actor_id=event.actor_id)

        async def after() -> None:
            await self.service.bus.publish(changed)
            self.notify()

        return after
