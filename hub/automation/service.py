"""``Automation``: rules matched in their event's transaction, run by a worker.

- **Matching** happens in the transaction that stores the event (a customer's
  message, a ticket opened, an SLA warning, a resolve): the enabled rules of
  that event are read, their conditions checked on facts read there, and one
  ``automation_runs`` row written per match, unique per rule and event, so a
  provider's retry or a second instance never runs a rule twice for one event
  (STYLE habit 13: the work commits with its cause).
- **customer_silent** has no event of its own: a sweep (every instance, every
  ``HUB_AUTOMATION_SWEEP_SECONDS``) finds open conversations whose latest
  message is the team's and older than the rule's hours; the run's key is that
  message, so one silence runs a rule once however many instances sweep.
- **Running** is a ``JobWorker`` over the runs queue: actions in order, each
  recorded (``step``) so a retry resumes after the last one done; a reply's
  idempotency key is the run and step, so a crash between sending and
  recording sends it once. An action that no longer applies (the ticket was
  resolved meanwhile) is skipped with a log line; a rule pointing at something
  missing (a deleted canned reply, an unknown agent) goes dead, listed in
  ``/api/v1/jobs?queue=automation`` for an admin.
- ``close_after_silence`` queues a ``close`` run due in N days; when due, it
  closes the conversation (after the notice) only if the customer has not
  written since.
- **Loops**: a message the hub marks unanswerable (auto-replies, bounces, SMS
  keywords) starts no message_received rule, so an auto-responder cannot
  ping-pong with a rule's reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.audit import Actor, Audit
from hub.automation import facts as facts_tx
from hub.automation import store
from hub.automation.rules import Rule, matches
from hub.automation.store import RUNS, Run
from hub.canned import store as canned_store
from hub.canned import templates
from hub.canned.service import variables
from hub.errors import ChannelSendError, Conflict, HubError, NotFound
from hub.events import Clock, ConversationUpdated, MessageReceived, SlaWarning, TicketOpened, utcnow
from hub.jobs.worker import JobWorker
from hub.models import AuthorKind, ConversationStatus, Direction, MessageKind, Role
from hub.storage.schema import contacts, conversations, messages, sla_warnings, tickets, users
from hub.tickets.queries import open_ticket_of
from hub.txhooks import After
from hub.versions import AUTOMATION_RULES, VersionedCache
from hub.webhooks import payloads as webhook_payloads
from hub.webhooks import store as webhooks_store

if TYPE_CHECKING:
    from hub.canned.service import CannedReplies
    from hub.config import Settings
    from hub.conversations.service import HubService
    from hub.storage import Database
    from hub.tickets.service import TicketService

log = logging.getLogger(__name__)

ACTOR = Actor(None, "automation")
SILENT_LOOKBACK = timedelta(days=30)  # a silence older than this is not swept (a rule added late)
SWEEP_BATCH = 500
DRY_RUN_SCAN = 5000  # events read at most by one dry run


class Automation:
    def __init__(
        self,
        db: Database,
        service: HubService,
        tickets_service: TicketService,
        canned: CannedReplies,
        *,
        clock: Clock,
        sweep_seconds: float = 60.0,
    ) -> None:
        self.db = db
        self.service = service
        self.tickets = tickets_service
        self.canned = canned
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        hours = tickets_service.hours
        self.open_at: Callable[[datetime], bool] | None = (
            None if hours is None else (lambda at: hours.next_opening(at) == at.astimezone(UTC))
        )
        self.worker = JobWorker(db, RUNS, self._run, name="automation-worker", concurrency=4, max_attempts=6)
        self.on_webhook: Callable[[], None] | None = None  # wakes the webhooks' sender
        # The enabled rules by event, re-read when a rule changes on any instance
        # (hub.versions): matching runs in every inbound message's transaction.
        self._rules: VersionedCache[dict[str, list[Rule]]] = VersionedCache(AUTOMATION_RULES, _enabled_by_event)
        self._removers: list[Callable[[], None]] = []
        self._sweeper: asyncio.Task[None] | None = None

    # --- wiring ------------------------------------------------------------------
    def start(self) -> None:
        hooks = self.service.tx_hooks
        self._removers = [
            hooks.add(MessageReceived, self._message_tx),
            hooks.add(TicketOpened, self._ticket_opened_tx),
            hooks.add(SlaWarning, self._sla_warning_tx),
            hooks.add(ConversationUpdated, self._resolved_tx),
        ]
        self.worker.start()
        # One instance sweeps (the holder of its lease), another takes over when it stops or dies.
        self._sweeper = asyncio.create_task(
            self.service.periodically("automation-silence-sweep", self.sweep_seconds, self.sweep_silent),
            name="automation-sweep",
        )

    async def stop(self) -> None:
        for remove in self._removers:
            remove()
        self._removers = []
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.worker.stop()

    def rules_changed(self) -> None:
        """This instance changed the rules (and bumped their version with them): re-read now."""
        self._rules.invalidate()

    # --- matching, in the event's transaction --------------------------------------
    def _match_tx(
        self,
        conn: Connection,
        when: str,
        conversation_id: int,
        key: str,
        *,
        at: datetime,
        text: str | None = None,
        channel: str | None = None,
        rules: list[Rule] | None = None,
    ) -> int:
        """Queue a run of every enabled ``when`` rule that matches; how many were queued."""
        candidates = rules if rules is not None else self._rules.get(conn).get(when, [])
        if not candidates:
            return 0
        facts = facts_tx.read(conn, conversation_id, at=at, open_at=self.open_at, text=text, channel=channel)
        if facts is None:
            return 0
        queued = 0
        for rule in candidates:
            if rule.id is None or not matches(rule, facts):
                continue
            values = {
                "rule_id": rule.id,
                "conversation_id": conversation_id,
                "event": when,
                "event_key": key,
                "payload": {"rule": rule.name},
                "step": 0,
            }
            # The queue's times are its worker's (the machine's clock, as for every queue).
            if RUNS.enqueue(conn, values, utcnow(), dedup=True) is not None:
                queued += 1
        return queued

    def _wake(self, queued: int) -> After | None:
        if not queued:
            return None

        async def wake() -> None:
            self.worker.notify()

        return wake

    def _message_tx(self, conn: Connection, event: MessageReceived) -> After | None:
        if not event.answerable:
            return None  # an auto-reply or a keyword: no rule answers it (no loops)
        return self._wake(
            self._match_tx(
                conn,
                "message_received",
                event.conversation_id,
                f"message:{event.message_id}",
                at=event.at,
                text=event.body,
                channel=event.channel,
            )
        )

    def _ticket_opened_tx(self, conn: Connection, event: TicketOpened) -> After | None:
        return self._wake(
            self._match_tx(conn, "ticket_opened", event.conversation_id, f"ticket:{event.ticket_id}", at=event.at)
        )

    def _sla_warning_tx(self, conn: Connection, event: SlaWarning) -> After | None:
        key = f"sla-warning:{event.ticket_id}:{event.target}:{event.due_at.isoformat()}"
        return self._wake(self._match_tx(conn, "sla_warning", event.conversation_id, key, at=event.at))

    def _resolved_tx(self, conn: Connection, event: ConversationUpdated) -> After | None:
        if event.changes.get("status") != ConversationStatus.RESOLVED.value:
            return None
        resolved_at = conn.execute(
            sa.select(conversations.c.resolved_at).where(conversations.c.id == event.conversation_id)
        ).scalar()
        stamp = (resolved_at or event.at).isoformat()
        key = f"resolved:{event.conversation_id}:{stamp}"
        return self._wake(self._match_tx(conn, "ticket_resolved", event.conversation_id, key, at=event.at))

    # --- customer_silent -------------------------------------------------------------
    async def sweep_silent(self) -> int:
        """Queue the customer_silent rules of silences that have lasted long enough; how many runs."""
        now = self.clock.now()

        def sweep(conn: Connection) -> int:
            queued = 0
            for rule in self._rules.get(conn).get("customer_silent", []):
                for conversation_id, message_id in silent_conversations(conn, rule, now):
                    queued += self._match_tx(
                        conn, "customer_silent", conversation_id, f"silent:{message_id}", at=now, rules=[rule]
                    )
            return queued

        queued = await self.db.write(sweep)
        if queued:
            self.worker.notify()
        return queued

    # --- running ---------------------------------------------------------------------
    async def _run(self, run: Run) -> None:
        if run.event == "close":
            await self._close(run)
            return
        try:
            rule = await self.db.read(store.get_rule, run.rule_id)
        except NotFound:
            return  # deleted since: nothing to do
        for step in range(run.step, len(rule.actions)):
            action = rule.actions[step]
            ((kind, arg),) = action.items()
            try:
                await self._apply(kind, arg, rule, run, step)
            except Conflict as err:
                log.info("automation %s: %s skipped on conversation %s: %s", rule.name, kind, run.conversation_id, err)
            except NotFound as err:
                if await self._conversation_gone(run.conversation_id):
                    return
                raise ChannelSendError(f"{kind}: {err.message}", retryable=False) from err
            except HubError as err:
                raise ChannelSendError(f"{kind}: {err.message}", retryable=False) from err
            await self.db.write(store.advance, run.id, step + 1, self.clock.now())

    async def _conversation_gone(self, conversation_id: int) -> bool:
        found = await self.db.read(
            lambda conn: conn.execute(
                sa.select(conversations.c.id).where(conversations.c.id == conversation_id)
            ).first()
        )
        return found is None

    async def _open_ticket(self, conversation_id: int) -> int | None:
        ticket = await self.db.read(open_ticket_of, conversation_id)
        return ticket.id if ticket is not None else None

    def _audit(self, action: str, rule: Rule, target_type: str, target_id: Any) -> Audit:
        return Audit(ACTOR, action, target_type, target_id, {"rule": rule.name})

    async def _apply(self, kind: str, arg: Any, rule: Rule, run: Run, step: int) -> None:
        conversation_id = run.conversation_id
        ticket_id = await self._open_ticket(conversation_id)
        if kind == "set_priority":
            if ticket_id is not None:
                await self.tickets.set_priority(
                    ticket_id, arg, actor_id=None, audit=self._audit("ticket.priority", rule, "ticket", ticket_id)
                )
            else:
                await self.service.update_conversation(
                    conversation_id,
                    {"priority": arg},
                    audit=self._audit("conversation.update", rule, "conversation", conversation_id),
                )
        elif kind == "add_tag":
            await self.db.write(_add_tag, conversation_id, arg)
        elif kind in ("assign_team", "assign_agent"):
            if ticket_id is None:
                team = arg if kind == "assign_team" else None
                ticket = await self.tickets.open(
                    conversation_id,
                    reason=f"automation rule {rule.name}",
                    source="automation",
                    team=team,
                    audit=self._audit("ticket.open", rule, "conversation", conversation_id),
                )
                ticket_id = ticket.id
                if kind == "assign_team":
                    return
            if kind == "assign_team":
                await self.tickets.set_team(
                    ticket_id, arg, actor_id=None, audit=self._audit("ticket.team", rule, "ticket", ticket_id)
                )
            else:
                agent_id = await self.db.read(_agent_id, arg)
                await self.tickets.assign(
                    ticket_id, agent_id, actor_id=None, audit=self._audit("ticket.assign", rule, "ticket", ticket_id)
                )
        elif kind == "send_canned":
            await self._send_canned(arg, rule, run, step)
        elif kind == "add_note":
            await self.service.add_note(
                conversation_id,
                arg,
                author_id=None,
                audit=self._audit("conversation.note", rule, "conversation", conversation_id),
            )
        elif kind == "close_after_silence":
            await self.db.write(self._schedule_close, rule, run, step, arg)
        elif kind == "webhook":
            if await self.db.write(_queue_webhook, arg, rule, run, step) is not None and self.on_webhook is not None:
                self.on_webhook()
        else:  # checked when the rule was saved
            raise AssertionError(f"unknown action {kind}")

    async def _send_canned(self, name: str, rule: Rule, run: Run, step: int) -> None:
        def render(conn: Connection) -> str:
            reply = canned_store.get_reply(conn, name)
            assignee = conn.execute(
                sa.select(conversations.c.assignee_id).where(conversations.c.id == run.conversation_id)
            ).scalar()
            return templates.render(reply.body, variables(conn, run.conversation_id, assignee))

        text = await self.db.read(render)
        await self.service.reply(
            run.conversation_id,
            text,
            author_kind=AuthorKind.SYSTEM,
            idempotency_key=f"automation:{run.id}:{step}",
            meta={"automation_rule": rule.name, "canned_reply": name},
            audit=self._audit("conversation.reply", rule, "conversation", run.conversation_id),
        )

    def _schedule_close(self, conn: Connection, rule: Rule, run: Run, step: int, arg: dict[str, Any]) -> None:
        now = utcnow()  # the queue's clock: its worker claims by it
        marker = conn.execute(
            sa.select(sa.func.max(messages.c.id)).where(messages.c.conversation_id == run.conversation_id)
        ).scalar()
        payload = {"rule": rule.name, "after_message_id": marker or 0, "days": arg["days"]}
        payload.update({k: arg[k] for k in ("notice", "canned") if k in arg})
        RUNS.enqueue(
            conn,
            {
                "rule_id": run.rule_id,
                "conversation_id": run.conversation_id,
                "event": "close",
                "event_key": f"close:{run.id}:{step}",
                "payload": payload,
                "step": 0,
            },
            now,
            dedup=True,
            due=now + timedelta(days=arg["days"]),
        )

    async def _close(self, run: Run) -> None:
        """Due: close the conversation after its notice, unless the customer wrote since."""
        payload = run.payload

        def state(conn: Connection) -> tuple[str | None, bool]:
            status = conn.execute(
                sa.select(conversations.c.status).where(conversations.c.id == run.conversation_id)
            ).scalar()
            wrote = conn.execute(
                sa.select(messages.c.id)
                .where(
                    messages.c.conversation_id == run.conversation_id,
                    messages.c.direction == Direction.INBOUND.value,
                    messages.c.kind == MessageKind.MESSAGE.value,
                    messages.c.id > payload.get("after_message_id", 0),
                )
                .limit(1)
            ).first()
            return status, wrote is not None

        status, wrote = await self.db.read(state)
        if status is None or status == ConversationStatus.RESOLVED.value or wrote:
            return  # gone, closed already, or the customer answered: the silence is over
        rule = Rule(id=run.rule_id, name=str(payload.get("rule", "")), when="close")
        if run.step == 0:
            if payload.get("canned"):
                await self._send_canned(str(payload["canned"]), rule, run, 0)
            elif payload.get("notice"):
                await self.service.reply(
                    run.conversation_id,
                    str(payload["notice"]),
                    author_kind=AuthorKind.SYSTEM,
                    idempotency_key=f"automation:{run.id}:0",
                    meta={"automation_rule": rule.name},
                    audit=self._audit("conversation.reply", rule, "conversation", run.conversation_id),
                )
            await self.db.write(store.advance, run.id, 1, self.clock.now())
        ticket_id = await self._open_ticket(run.conversation_id)
        audit = self._audit("conversation.resolve", rule, "conversation", run.conversation_id)
        try:
            if ticket_id is not None:
                await self.tickets.resolve(ticket_id, actor_id=None, audit=audit)
            else:
                await self.service.update_conversation(
                    run.conversation_id, {"status": ConversationStatus.RESOLVED.value}, audit=audit
                )
        except Conflict:
            pass  # resolved meanwhile

    # --- dry run ---------------------------------------------------------------------
    async def dry_run(self, rule: Rule, *, days: float, limit: int) -> dict[str, Any]:
        """Which past events of the last ``days`` the rule would have matched
        (conditions checked on each conversation as it is now, with the event's
        own text and channel); nothing is run or queued."""
        now = self.clock.now()
        since = now - timedelta(days=days)

        def scan(conn: Connection) -> dict[str, Any]:
            scanned = 0
            matched: list[dict[str, Any]] = []
            count = 0
            for conversation_id, at, text, channel in past_events(conn, rule, since, now):
                scanned += 1
                facts = facts_tx.read(conn, conversation_id, at=at, open_at=self.open_at, text=text, channel=channel)
                if facts is None or not matches(rule, facts):
                    continue
                count += 1
                if len(matched) < limit:
                    matched.append(
                        {
                            "conversation_id": conversation_id,
                            "at": at.isoformat(),
                            "text": (facts.text[:157] + "...") if len(facts.text) > 160 else facts.text,
                        }
                    )
            return {
                "rule": rule.name,
                "when": rule.when,
                "since": since.isoformat(),
                "scanned": scanned,
                "matched": count,
                "truncated": scanned >= DRY_RUN_SCAN,
                "matches": matched,
            }

        return await self.db.read(scan)


def _enabled_by_event(conn: Connection) -> dict[str, list[Rule]]:
    by_event: dict[str, list[Rule]] = {}
    for rule in store.list_rules(conn, enabled_only=True):
        by_event.setdefault(rule.when, []).append(rule)
    return by_event


def silent_conversations(conn: Connection, rule: Rule, now: datetime) -> list[tuple[int, int]]:
    """(conversation, the team's last message) of open conversations whose
    latest message is the team's and at least the rule's hours old."""
    assert rule.silent_hours is not None
    cutoff = now - timedelta(hours=rule.silent_hours)
    latest = messages.alias("latest")
    latest_id = (
        sa.select(sa.func.max(messages.c.id))
        .where(messages.c.conversation_id == conversations.c.id, messages.c.kind == MessageKind.MESSAGE.value)
        .correlate(conversations)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(conversations.c.id, latest.c.id.label("message_id"), latest.c.direction)
        .select_from(conversations.join(latest, latest.c.id == latest_id))
        .where(
            conversations.c.status.in_((ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)),
            conversations.c.last_message_at <= cutoff,
            conversations.c.last_message_at > cutoff - SILENT_LOOKBACK,
        )
        .order_by(conversations.c.last_message_at.desc())
        .limit(SWEEP_BATCH)
    ).all()
    return [(row.id, row.message_id) for row in rows if row.direction == Direction.OUTBOUND.value]


def past_events(
    conn: Connection, rule: Rule, since: datetime, now: datetime
) -> list[tuple[int, datetime, str | None, str | None]]:
    """(conversation, when, text, channel) of the rule's event since ``since``, newest first."""
    if rule.when == "message_received":
        rows = conn.execute(
            sa.select(messages.c.conversation_id, messages.c.created_at, messages.c.body, messages.c.channel)
            .where(
                messages.c.direction == Direction.INBOUND.value,
                messages.c.kind == MessageKind.MESSAGE.value,
                messages.c.created_at >= since,
            )
            .order_by(messages.c.id.desc())
            .limit(DRY_RUN_SCAN)
        ).all()
        return [(r.conversation_id, r.created_at, r.body, r.channel) for r in rows]
    if rule.when == "ticket_opened":
        stmt = sa.select(tickets.c.conversation_id, tickets.c.created_at).where(tickets.c.created_at >= since)
        order = tickets.c.id.desc()
    elif rule.when == "sla_warning":
        stmt = (
            sa.select(tickets.c.conversation_id, sla_warnings.c.warned_at)
            .select_from(sla_warnings.join(tickets, tickets.c.id == sla_warnings.c.ticket_id))
            .where(sla_warnings.c.warned_at >= since)
        )
        order = sla_warnings.c.id.desc()
    elif rule.when == "ticket_resolved":
        stmt = sa.select(conversations.c.id, conversations.c.resolved_at).where(conversations.c.resolved_at >= since)
        order = conversations.c.resolved_at.desc()
    else:  # customer_silent: the silences as they are now
        return [(cid, now, None, None) for cid, _ in silent_conversations(conn, rule, now)]
    return [(row[0], row[1], None, None) for row in conn.execute(stmt.order_by(order).limit(DRY_RUN_SCAN))]


def _add_tag(conn: Connection, conversation_id: int, tag: str) -> None:
    """Tag the conversation's contact (in one transaction: no tag lost to a concurrent one)."""
    row = conn.execute(
        sa.select(contacts.c.id, contacts.c.tags)
        .select_from(conversations.join(contacts, contacts.c.id == conversations.c.contact_id))
        .where(conversations.c.id == conversation_id)
        .with_for_update(of=contacts)
    ).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    tags = list(row.tags or [])
    if tag not in tags:
        conn.execute(sa.update(contacts).where(contacts.c.id == row.id).values(tags=[*tags, tag]))


def _queue_webhook(conn: Connection, endpoint_id: int, rule: Rule, run: Run, step: int) -> int | None:
    """An ``automation.matched`` delivery to the rule's endpoint (signed, retried and logged
    like every webhook: ``hub.webhooks``); the run and step name it, so a retry queues it once."""
    webhooks_store.get_endpoint(conn, endpoint_id)  # a 404 for an endpoint deleted since: the run goes dead
    contact_id = conn.execute(
        sa.select(conversations.c.contact_id).where(conversations.c.id == run.conversation_id)
    ).scalar()
    data = {
        "rule": {"id": rule.id, "name": rule.name, "when": rule.when},
        "trigger": run.event_key,
        "conversation": webhook_payloads.conversation(conn, run.conversation_id),
    }
    return webhooks_store.enqueue_delivery(
        conn,
        endpoint_id,
        "automation.matched",
        data,
        event_key=f"automation:{run.id}:{step}",
        now=utcnow(),
        contact_id=contact_id,
        conversation_id=run.conversation_id,
    )


def _agent_id(conn: Connection, who: int | str) -> int:
    column = users.c.id if isinstance(who, int) else sa.func.lower(users.c.email)
    value = who if isinstance(who, int) else who.lower()
    row = conn.execute(sa.select(users.c.id, users.c.role).where(column == value)).first()
    if row is None or row.role not in (Role.AGENT.value, Role.ADMIN.value):
        raise NotFound(f"no agent {who!r} to assign")
    return int(row.id)


async def automation_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the file's rules synchronised, then matching and the worker (after tickets)."""
    settings: Settings = app[keys.SETTINGS]
    automation = Automation(
        app[keys.DATABASE],
        app[keys.SERVICE],
        app[keys.TICKETS],
        app[keys.CANNED_REPLIES],
        clock=app[keys.CLOCK],
        sweep_seconds=settings.automation_sweep_seconds,
    )
    if settings.automation_file is not None:
        await load_rules_file(automation.db, settings.automation_file, automation.clock.now())
    webhooks = app.get(keys.WEBHOOKS)
    if webhooks is not None:
        automation.on_webhook = webhooks.sender.notify
    app[keys.AUTOMATION] = automation
    automation.start()
    try:
        yield
    finally:
        await automation.stop()


async def load_rules_file(db: Database, path: Path, now: datetime) -> dict[str, int]:
    rules = store.load_file(path)
    counts = await db.write(lambda conn: store.sync_file(conn, rules, now=now))
    log.info("automation rules from %s: %s", path, ", ".join(f"{n} {what}" for what, n in counts.items()))
    return counts
