"""``TicketService``: the ticket use cases behind the API, the bus and Slack.

Every change runs as one transaction (``hub.tickets.transactions``) and its
events are published after the commit. Time comes from ``clock`` so that SLA
tests move it instead of sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub import keys
from hub.errors import InvalidInput
from hub.events import (
    Clock,
    ConversationUpdated,
    HandoffRequested,
    MessageQueued,
    MessageReceived,
    SlaBreached,
    TicketChanged,
    TicketOpened,
)
from hub.models import AuthorKind, Priority
from hub.tickets import agents as agents_tx
from hub.tickets import routing, sla
from hub.tickets.model import Ticket
from hub.tickets.queries import due_breaches, due_snoozes, get_ticket, list_tickets, open_ticket_of, queue, tickets_of
from hub.tickets.rules import list_rules
from hub.tickets.transactions import (
    Change,
    Policy,
    assign,
    customer_wrote,
    escalate,
    fill_capacity,
    open_ticket,
    record_first_response,
    reroute,
    resolve,
    set_priority,
    snooze,
    sync_from_conversation,
    wake,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from hub.bus import EventBus
    from hub.config import Settings
    from hub.storage import Database

log = logging.getLogger(__name__)


class TicketService:
    """Ticket use cases; publishes after every commit. Subscribes to the bus."""

    def __init__(self, db: Database, bus: EventBus, settings: Settings, *, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.bus = bus
        self.settings = settings
        self.slas = sla.parse_policies(settings.sla_policies)
        self.hours = sla.BusinessHours.parse(settings.sla_business_hours, settings.sla_timezone, settings.sla_holidays)
        self._policy: Policy | None = None  # rebuilt when the routing rules change
        self._unsubscribe: list[Any] = []
        self.scheduler = sla.SlaScheduler(self.check_due, interval=settings.sla_check_interval)

    # --- wiring ------------------------------------------------------------------
    def subscribe(self) -> None:
        self._unsubscribe = [
            self.bus.subscribe(HandoffRequested, self._on_handoff),
            self.bus.subscribe(MessageReceived, self._on_message),
            self.bus.subscribe(MessageQueued, self._on_queued),
            self.bus.subscribe(ConversationUpdated, self._on_conversation),
        ]

    def unsubscribe(self) -> None:
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []

    async def policy(self) -> Policy:
        policy = self._policy
        if policy is None:
            rules = tuple(await self.db.read(list_rules))
            policy = Policy(
                rules=rules, slas=self.slas, default_team=self.settings.ticket_default_team, hours=self.hours
            )
            self._policy = policy
        return policy

    def rules_changed(self) -> None:
        self._policy = None

    async def _publish(self, change: Change | None, *, actor_id: int | None = None) -> None:
        if change is None:
            return
        ticket = change.ticket
        if change.conversation_changes:
            await self.bus.publish(
                ConversationUpdated(
                    conversation_id=ticket.conversation_id, changes=change.conversation_changes, actor_id=actor_id
                )
            )
        if change.created:
            await self.bus.publish(
                TicketOpened(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    priority=ticket.priority.value,
                    team=ticket.team,
                    assignee_id=ticket.assignee_id,
                )
            )
        elif change.ticket_changes:
            await self.bus.publish(
                TicketChanged(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    changes=change.ticket_changes,
                    actor_id=actor_id,
                )
            )
        if change.breached:
            await self.bus.publish(
                SlaBreached(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    target=change.breached,
                    team=ticket.team,
                    priority=ticket.priority.value,
                    assignee_id=ticket.assignee_id,
                )
            )
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
    ) -> Ticket:
        try:
            priority = Priority(priority)
        except ValueError:
            raise InvalidInput("priority must be one of urgent, high, normal, low") from None
        policy = await self.policy()
        change = await self.db.write(
            lambda conn: open_ticket(
                conn,
                conversation_id,
                policy=policy,
                priority=priority,
                reason=reason,
                source=source,
                kb_hits=kb_hits,
                team=team,
                actor_id=actor_id,
                now=self.clock.now(),
            )
        )
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def get(self, ticket_id: int) -> Ticket:
        return await self.db.read(get_ticket, ticket_id)

    async def claim(self, ticket_id: int, agent_id: int) -> Ticket:
        change = await self.db.write(
            assign, ticket_id, agent_id, actor_id=agent_id, now=self.clock.now(), only_if_unassigned=True
        )
        await self._publish(change, actor_id=agent_id)
        return change.ticket

    async def assign(self, ticket_id: int, assignee_id: int | None, *, actor_id: int | None) -> Ticket:
        change = await self.db.write(assign, ticket_id, assignee_id, actor_id=actor_id, now=self.clock.now())
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def resolve(self, ticket_id: int, *, actor_id: int | None) -> Ticket:
        change = await self.db.write(resolve, ticket_id, actor_id=actor_id, now=self.clock.now())
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def set_priority(self, ticket_id: int, priority: str, *, actor_id: int | None) -> Ticket:
        policy = await self.policy()
        change = await self.db.write(
            set_priority, ticket_id, priority, policy=policy, actor_id=actor_id, now=self.clock.now()
        )
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def snooze(self, ticket_id: int, *, minutes: float | None = None, actor_id: int | None) -> Ticket:
        now = self.clock.now()
        until = now + timedelta(minutes=minutes if minutes is not None else self.settings.snooze_minutes)
        change = await self.db.write(snooze, ticket_id, until, actor_id=actor_id, now=now)
        await self._publish(change, actor_id=actor_id)
        return change.ticket

    async def set_duty(self, user_id: int, on_duty: bool, *, actor_id: int | None) -> agents_tx.Agent:
        """On duty: pick up queued tickets. Off duty: hand open tickets to others (or the queue)."""
        await self.update_agent(user_id, {"on_duty": on_duty})  # on duty: takes queued tickets
        if not on_duty:
            for ticket_id in await self.db.read(tickets_of, user_id):
                await self._publish(
                    await self.db.write(reroute, ticket_id, exclude=(user_id,), now=self.clock.now()), actor_id=actor_id
                )
        return await self.get_agent(user_id)

    async def update_agent(self, user_id: int, changes: dict[str, Any]) -> agents_tx.Agent:
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
        """One scheduler pass: escalate breached SLAs, wake snoozed tickets."""
        now = self.clock.now()
        done = 0
        for ticket_id, target in await self.db.read(due_breaches, now):
            change = await self.db.write(
                escalate,
                ticket_id,
                target,
                now,
                bump_priority=self.settings.sla_breach_bump_priority,
                reassign=self.settings.sla_breach_reassign,
            )
            if change is not None:
                log.warning("SLA %s breached on ticket %s", target, ticket_id)
                done += 1
                await self._publish(change)
        for ticket_id in await self.db.read(due_snoozes, now):
            await self._publish(await self.db.write(wake, ticket_id, now))
            done += 1
        return done

    # --- subscribers -----------------------------------------------------------------
    async def _on_handoff(self, event: HandoffRequested) -> None:
        await self.open(
            event.conversation_id,
            priority=event.priority,
            reason=event.reason,
            source=event.source,
            kb_hits=event.kb_hits,
        )

    async def _on_message(self, event: MessageReceived) -> None:
        policy = await self.policy()
        hits = routing.keyword_hits(policy.rules, event.body)
        # A ticket makes its conversation human-handled; a bot-handled one has
        # none, so the common case needs no database read.
        ticket = await self.db.read(open_ticket_of, event.conversation_id) if event.handler == "human" else None
        if ticket is not None and (ticket.sla_paused_at is not None or ticket.snoozed_until is not None):
            await self._publish(
                await self.db.write(customer_wrote, event.conversation_id, policy=policy, now=self.clock.now())
            )
        if hits and (ticket is not None or any(rule.handoff for rule in hits)):
            # A rule matched what the customer wrote (whether or not the bot saw
            # it): open a ticket, or raise the open one's priority.
            await self.open(
                event.conversation_id,
                priority=Priority.LOW,
                source="rule",
                reason="matched " + ", ".join(f"'{r.params['words'][0]}' rule" for r in hits),
            )

    async def _on_queued(self, event: MessageQueued) -> None:
        if event.author_kind == AuthorKind.AGENT.value:
            ticket = await self.db.write(record_first_response, event.conversation_id, event.at)
            if ticket is not None:
                await self.bus.publish(
                    TicketChanged(
                        ticket_id=ticket.id,
                        conversation_id=ticket.conversation_id,
                        changes={
                            "first_response_at": ticket.first_response_at.isoformat()
                            if ticket.first_response_at
                            else None
                        },
                    )
                )

    async def _on_conversation(self, event: ConversationUpdated) -> None:
        if not {"status", "priority", "assignee_id"} & set(event.changes):
            return
        policy = await self.policy()
        change = await self.db.write(
            sync_from_conversation, event.conversation_id, event.changes, policy=policy, now=self.clock.now()
        )
        if change is not None:
            change.conversation_changes = {}  # already published by whoever changed it
            if not change.ticket_changes:
                change.ticket_changes = {"conversation": dict(event.changes)}
            await self._publish(change, actor_id=event.actor_id)


async def tickets_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the ticket service, its subscriptions and the SLA scheduler."""
    service = TicketService(app[keys.DATABASE], app[keys.BUS], app[keys.SETTINGS], clock=app[keys.CLOCK])
    await service.db.write(agents_tx.recount_loads)
    service.subscribe()
    app[keys.TICKETS] = service
    service.scheduler.start()  # its first pass catches up on what fell due while down
    try:
        yield
    finally:
        await service.scheduler.stop()
        service.unsubscribe()
