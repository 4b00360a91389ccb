"""``TicketService``: the ticket use cases behind the API, the bot and Slack.

Every change runs as one transaction (``hub.tickets.transactions``); its
events are built in it and run through the hub's in-transaction hooks
(``hub.txhooks``: the Slack desk queues its card jobs there), then published
after the commit as notifications. What customers' messages and conversation
changes mean for tickets is done by hooks in *their* transactions
(``_received_tx``, ``_queued_tx``, ``_conversation_tx``). Time comes from
``clock`` so that SLA tests move it instead of sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub import keys
from hub.audit import Audit, record
from hub.crashpoints import crash_point
from hub.errors import InvalidInput
from hub.events import (
    Clock,
    ConversationUpdated,
    Event,
    MessageQueued,
    MessageReceived,
    SlaBreached,
    SlaWarning,
    TicketChanged,
    TicketOpened,
)
from hub.leases import Lease, new_holder
from hub.models import AuthorKind, Priority
from hub.tickets import agents as agents_tx
from hub.tickets import routing, sla
from hub.tickets.model import Ticket
from hub.tickets.queries import (
    due_breaches,
    due_snoozes,
    due_warnings,
    get_ticket,
    list_tickets,
    open_ticket_of,
    queue,
    tickets_of,
)
from hub.tickets.rules import list_rules
from hub.tickets.transactions import (
    Change,
    Policy,
    assign,
    backfill_warning_moments,
    customer_wrote,
    escalate,
    fill_capacity,
    open_ticket,
    queue_beside_room,
    record_first_response,
    reroute,
    resolve,
    set_priority,
    set_team,
    snooze,
    sync_from_conversation,
    wake,
    warn,
)
from hub.txhooks import After, TxHooks, run_afters
from hub.versions import ROUTING_RULES, VersionedCache

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from hub.bus import EventBus
    from hub.config import Settings
    from hub.storage import Database

log = logging.getLogger(__name__)


class TicketService:
    """Ticket use cases; their events are hooked in the transaction, published after it."""

    def __init__(
        self, db: Database, bus: EventBus, settings: Settings, *, clock: Clock, hooks: TxHooks | None = None
    ) -> None:
        self.db = db
        # The hub's in-transaction hooks: the ticket work a message or a
        # conversation change causes is registered here (``subscribe``), and
        # the ticket events are run through them (the Slack desk's card jobs).
        self.tx_hooks = hooks if hooks is not None else TxHooks()
        self.clock = clock
        self.bus = bus
        self.settings = settings
        self.slas = sla.parse_policies(settings.sla_policies)
        self.hours = sla.BusinessHours.parse(settings.sla_business_hours, settings.sla_timezone, settings.sla_holidays)
        # Rebuilt when the routing rules change, here or on another instance.
        self._policy: VersionedCache[Policy] = VersionedCache(ROUTING_RULES, self._build_policy)
        self._unsubscribe: list[Any] = []
        # Of several instances on one database, one runs the passes (the lease's holder).
        lease = Lease(db, "sla-scheduler", holder=new_holder(), seconds=settings.lease_seconds, now=clock.now)
        self.scheduler = sla.SlaScheduler(self.check_due, interval=settings.sla_check_interval, lease=lease)

    # --- wiring ------------------------------------------------------------------
    def subscribe(self) -> None:
        self._unsubscribe = [
            self.tx_hooks.add(MessageReceived, self._received_tx),
            self.tx_hooks.add(MessageQueued, self._queued_tx),
            self.tx_hooks.add(ConversationUpdated, self._conversation_tx),
        ]

    def unsubscribe(self) -> None:
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []

    async def policy(self) -> Policy:
        """The routing rules and SLA policy; the rules are re-read when another
        instance changed them (``hub.versions``: one look a second at most)."""
        policy = self._policy.fresh()
        return policy if policy is not None else await self.db.read(self._policy.get)

    def _policy_in(self, conn: Connection) -> Policy:
        """The policy, checked and read in the caller's transaction when due."""
        return self._policy.get(conn)

    def _build_policy(self, conn: Connection) -> Policy:
        return Policy(
            rules=tuple(list_rules(conn)),
            slas=self.slas,
            default_team=self.settings.ticket_default_team,
            hours=self.hours,
            warn_at=self.settings.sla_warn_at,
        )

    def rules_changed(self) -> None:
        """This instance changed the rules (and bumped their version with them): re-read now."""
        self._policy.invalidate()

    def _events(self, change: Change, actor_id: int | None) -> list[Event]:
        ticket = change.ticket
        events: list[Event] = []
        if change.conversation_changes:
            events.append(
                ConversationUpdated(
                    conversation_id=ticket.conversation_id,
                    changes=change.conversation_changes,
                    actor_id=actor_id,
                    origin="tickets",
                )
            )
        if change.created:
            events.append(
                TicketOpened(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    priority=ticket.priority.value,
                    team=ticket.team,
                    assignee_id=ticket.assignee_id,
                )
            )
        elif change.ticket_changes:
            events.append(
                TicketChanged(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    changes=change.ticket_changes,
                    actor_id=actor_id,
                )
            )
        if change.breached:
            events.append(
                SlaBreached(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    target=change.breached,
                    team=ticket.team,
                    priority=ticket.priority.value,
                    assignee_id=ticket.assignee_id,
                )
            )
        if change.warned:
            due = ticket.first_response_due if change.warned == "first_response" else ticket.resolution_due
            assert due is not None, "a warned target has a deadline"
            events.append(
                SlaWarning(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    target=change.warned,
                    due_at=due,
                    team=ticket.team,
                    priority=ticket.priority.value,
                    assignee_id=ticket.assignee_id,
                    at=change.now,
                )
            )
        return events

    def _seal(self, conn: Connection, change: Change | None, actor_id: int | None = None) -> None:
        """In the change's transaction: its events, and the hooks' work on them
        (a Slack card job, the bot taking a resolved conversation back)."""
        if change is None:
            return
        change.events = self._events(change, actor_id)
        for event in change.events:
            change.afters.extend(self.tx_hooks.run(conn, event))
        for routed in change.follow:
            self._seal(conn, routed)

    def _tx(
        self, fn: Callable[..., Any], *args: Any, by: int | None = None, audit: Audit | None = None, **kwargs: Any
    ) -> Any:
        """``fn(conn, ...)`` as a transaction whose changes (made by user
        ``by``) are sealed in it, with ``audit``'s row when it changed
        something (a resolve of a resolved ticket is no action)."""

        def run(conn: Connection) -> Any:
            result = fn(conn, *args, **kwargs)
            for change in result if isinstance(result, list) else [result]:
                self._seal(conn, change, by)
            if audit is not None and not (isinstance(result, Change) and _unchanged(result)):
                ticket = result.ticket if isinstance(result, Change) else None
                record(conn, audit, **({"ticket_id": ticket.id} if ticket is not None else {}))
            return result

        return run

    async def _publish(self, change: Change | None) -> None:
        """After the commit: notify (the work was done in the transaction)."""
        if change is None:
            return
        for event in change.events:
            await self.bus.publish(event)
        await run_afters(change.afters)
        if change.created or "priority" in change.ticket_changes or "sla_paused" in change.ticket_changes:
            self.scheduler.wake()
        for routed in change.follow:  # queued tickets this change made room for
            await self._publish(routed)

    # --- use cases -----------------------------------------------------------------
    async def open(
        self,
        conversation_id: int,
        *,
        priority: Priority | str = Priority.NORMAL,
        reason: str = "",
        source: str = "agent",
        kb_hits: list[dict[str, Any]] | None = None,
        team: str | None = None,
        actor_id: int | None = None,
        audit: Audit | None = None,
    ) -> Ticket:
        try:
            priority = Priority(priority)
        except ValueError:
            raise InvalidInput("priority must be one of urgent, high, normal, low") from None
        policy = await self.policy()
        change = await self.db.write(
            self._tx(
                open_ticket,
                conversation_id,
                policy=policy,
                priority=priority,
                reason=reason,
                source=source,
                kb_hits=kb_hits,
                team=team,
                actor_id=actor_id,
                now=self.clock.now(),
                by=actor_id,
                audit=audit,
            )
        )
        crash_point("handoff-committed")  # tests: committed, nothing published yet
        await self._publish(change)
        return change.ticket

    async def get(self, ticket_id: int) -> Ticket:
        return await self.db.read(get_ticket, ticket_id)

    async def claim(self, ticket_id: int, agent_id: int, *, audit: Audit | None = None) -> Ticket:
        return await self._change(
            assign, ticket_id, agent_id, actor_id=agent_id, only_if_unassigned=True, by=agent_id, audit=audit
        )

    async def assign(
        self, ticket_id: int, assignee_id: int | None, *, actor_id: int | None, audit: Audit | None = None
    ) -> Ticket:
        return await self._change(assign, ticket_id, assignee_id, actor_id=actor_id, by=actor_id, audit=audit)

    async def resolve(self, ticket_id: int, *, actor_id: int | None, audit: Audit | None = None) -> Ticket:
        return await self._change(resolve, ticket_id, actor_id=actor_id, by=actor_id, audit=audit)

    async def set_priority(
        self, ticket_id: int, priority: str, *, actor_id: int | None, audit: Audit | None = None
    ) -> Ticket:
        policy = await self.policy()
        return await self._change(
            set_priority, ticket_id, priority, policy=policy, actor_id=actor_id, by=actor_id, audit=audit
        )

    async def set_team(self, ticket_id: int, team: str, *, actor_id: int | None, audit: Audit | None = None) -> Ticket:
        """Move the ticket to another team (routed within it unless its assignee serves it)."""
        return await self._change(set_team, ticket_id, team, actor_id=actor_id, by=actor_id, audit=audit)

    async def snooze(
        self, ticket_id: int, *, minutes: float | None = None, actor_id: int | None, audit: Audit | None = None
    ) -> Ticket:
        until = self.clock.now() + timedelta(minutes=minutes if minutes is not None else self.settings.snooze_minutes)
        return await self._change(snooze, ticket_id, until, actor_id=actor_id, by=actor_id, audit=audit)

    async def _change(self, fn: Callable[..., Change], *args: Any, **kwargs: Any) -> Ticket:
        """One ticket transition: its transaction (sealed, audited), then its events."""
        change = await self.db.write(self._tx(fn, *args, now=self.clock.now(), **kwargs))
        await self._publish(change)
        return change.ticket

    async def set_duty(
        self, user_id: int, on_duty: bool, *, actor_id: int | None, audit: Audit | None = None
    ) -> agents_tx.Agent:
        """On duty: pick up queued tickets. Off duty: hand open tickets to others (or the queue)."""
        await self.update_agent(user_id, {"on_duty": on_duty}, audit=audit)  # on duty: takes queued tickets
        if not on_duty:
            for ticket_id in await self.db.read(tickets_of, user_id):
                await self._publish(
                    await self.db.write(
                        self._tx(reroute, ticket_id, exclude=(user_id,), now=self.clock.now(), by=actor_id)
                    )
                )
        return await self.get_agent(user_id)

    async def update_agent(
        self, user_id: int, changes: dict[str, Any], *, audit: Audit | None = None
    ) -> agents_tx.Agent:
        """Change a routing profile; more room (capacity, on duty) takes queued
        tickets in the same transaction."""
        now = self.clock.now()

        def tx(conn: Connection) -> tuple[agents_tx.Agent, list[Change]]:
            agent = agents_tx.update_profile(
                conn,
                user_id,
                changes,
                default_team=self.settings.ticket_default_team,
                default_capacity=self.settings.ticket_default_capacity,
            )
            routed = fill_capacity(conn, now=now) if {"capacity", "on_duty", "team"} & set(changes) else []
            for change in routed:
                self._seal(conn, change)
            if audit is not None:
                record(conn, audit)
            return agent, routed

        agent, routed = await self.db.write(tx)
        for change in routed:
            await self._publish(change)
        return await self.get_agent(user_id) if routed else agent

    async def get_agent(self, user_id: int) -> agents_tx.Agent:
        return await self.db.read(
            agents_tx.get_agent,
            user_id,
            default_team=self.settings.ticket_default_team,
            default_capacity=self.settings.ticket_default_capacity,
        )

    async def agent_for_slack_user(self, slack_user_id: str) -> agents_tx.Agent | None:
        return await self.db.read(
            agents_tx.agent_for_slack_user,
            slack_user_id,
            default_team=self.settings.ticket_default_team,
            default_capacity=self.settings.ticket_default_capacity,
        )

    async def list_agents(self) -> list[agents_tx.Agent]:
        return await self.db.read(
            agents_tx.list_agents,
            default_team=self.settings.ticket_default_team,
            default_capacity=self.settings.ticket_default_capacity,
        )

    async def anyone_on_duty(self) -> bool:
        """The duty roster behind the web chat's "agents online": is any agent on duty now?"""
        return await self.db.read(agents_tx.anyone_on_duty)

    async def queue(self, *, team: str | None = None, limit: int = 100) -> list[Ticket]:
        return await self.db.read(lambda conn: queue(conn, team=team, limit=limit))

    async def list(self, **filters: Any) -> list[Ticket]:
        return await self.db.read(lambda conn: list_tickets(conn, **filters))

    async def check_due(self) -> int:
        """One scheduler pass: escalate breached SLAs, warn of SLAs near their
        breach, wake snoozed tickets."""
        now = self.clock.now()
        done = 0
        for ticket_id, target in await self.db.read(due_breaches, now):
            change = await self.db.write(
                self._tx(
                    escalate,
                    ticket_id,
                    target,
                    now,
                    bump_priority=self.settings.sla_breach_bump_priority,
                    reassign=self.settings.sla_breach_reassign,
                )
            )
            if change is not None:
                log.warning("SLA %s breached on ticket %s", target, ticket_id)
                done += 1
                await self._publish(change)
        for ticket_id, target in await self.db.read(due_warnings, now):
            warned = await self.db.write(self._tx(warn, ticket_id, target, now))
            if warned is not None:
                log.info("SLA %s warning on ticket %s", target, ticket_id)
                done += 1
                await self._publish(warned)
        for ticket_id in await self.db.read(due_snoozes, now):
            woken = await self.db.write(self._tx(wake, ticket_id, now))
            if woken is not None:
                done += 1
                await self._publish(woken)
        # The queue's safety net (and the start-up catch-up): every change that
        # frees room fills it in its transaction, but the pass skips a ticket
        # whose rows another transaction held at that moment, and an erasure
        # frees room without routing.
        if await self.db.read(queue_beside_room):
            for change in await self.db.write(self._tx(fill_capacity, now=now)):
                await self._publish(change)
                done += 1
        return done

    # --- in-transaction hooks (``hub.txhooks``) -------------------------------------------
    def _after(self, changes: Sequence[Change | None]) -> After | None:
        done = [c for c in changes if c is not None]
        if not done:
            return None

        async def publish() -> None:
            for change in done:
                await self._publish(change)

        return publish

    def _received_tx(self, conn: Connection, event: MessageReceived) -> After | None:
        """A customer's message, in its ingest transaction: resume a paused or
        snoozed ticket's clock, and apply the keyword rules (open a ticket, or
        raise the open one's priority)."""
        policy = self._policy_in(conn)
        hits = routing.keyword_hits(policy.rules, event.body)
        # A ticket makes its conversation human-handled; a bot-handled one has
        # none, so the common case needs no database read.
        ticket = open_ticket_of(conn, event.conversation_id) if event.handler == "human" else None
        changes: list[Change | None] = []
        now = self.clock.now()
        if ticket is not None and (ticket.sla_paused_at is not None or ticket.snoozed_until is not None):
            changes.append(customer_wrote(conn, event.conversation_id, policy=policy, now=now))
        if hits and (ticket is not None or any(rule.handoff for rule in hits)):
            # A rule matched what the customer wrote (whether or not the bot saw
            # it): open a ticket, or raise the open one's priority.
            changes.append(
                open_ticket(
                    conn,
                    event.conversation_id,
                    policy=policy,
                    priority=Priority.LOW,
                    source="rule",
                    reason="matched " + ", ".join(f"'{r.params['words'][0]}' rule" for r in hits),
                    now=now,
                )
            )
        for change in changes:
            self._seal(conn, change)
        return self._after(changes)

    def _queued_tx(self, conn: Connection, event: MessageQueued) -> After | None:
        """An agent's reply, in its transaction: the ticket's first response."""
        if event.author_kind != AuthorKind.AGENT.value:
            return None
        ticket = record_first_response(conn, event.conversation_id, event.at)
        if ticket is None:
            return None
        at = ticket.first_response_at
        change = Change(
            ticket=ticket, now=event.at, ticket_changes={"first_response_at": at.isoformat() if at else None}
        )
        self._seal(conn, change)
        return self._after([change])

    def _conversation_tx(self, conn: Connection, event: ConversationUpdated) -> After | None:
        """A conversation changed elsewhere (``PATCH /conversations``), in that
        transaction: its open ticket follows (status, priority, assignee)."""
        if event.origin == "tickets" or not {"status", "priority", "assignee_id"} & set(event.changes):
            return None
        change = sync_from_conversation(
            conn, event.conversation_id, event.changes, policy=self._policy_in(conn), now=self.clock.now()
        )
        if change is None:
            return None
        change.conversation_changes = {}  # already published by whoever changed it
        if not change.ticket_changes:
            change.ticket_changes = {"conversation": dict(event.changes)}
        self._seal(conn, change, event.actor_id)
        return self._after([change])


def _unchanged(change: Change) -> bool:
    return not (change.created or change.ticket_changes or change.conversation_changes)


async def tickets_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the ticket service, its subscriptions and the SLA scheduler."""
    service = TicketService(
        app[keys.DATABASE], app[keys.BUS], app[keys.SETTINGS], clock=app[keys.CLOCK], hooks=app[keys.SERVICE].tx_hooks
    )
    await service.db.write(agents_tx.recount_loads)
    await service.db.write(lambda conn: backfill_warning_moments(conn, service._policy_in(conn)))
    service.subscribe()
    app[keys.TICKETS] = service
    service.scheduler.start()  # its first pass catches up on what fell due while down
    try:
        yield
    finally:
        await service.scheduler.stop()
        service.unsubscribe()
