"""Outgoing webhooks: the tx hooks that queue deliveries, and their worker.

Each domain event an integrator can subscribe to becomes one
``webhook_deliveries`` row per active endpoint that takes it, written by a
tx hook (``hub.txhooks``) in the transaction that stores the event's cause
(STYLE habit 13): a message stored is a delivery queued, or neither. After
the commit the worker (``hub.webhooks.sender``) is woken to send it.

| event                | from                                                    |
|----------------------|---------------------------------------------------------|
| message.created      | MessageReceived (inbound), MessageQueued (outbound)     |
| conversation.updated | ConversationUpdated (status, priority, assignee, handler)|
| ticket.opened        | TicketOpened                                            |
| ticket.assigned      | TicketOpened with an assignee; TicketChanged assignee_id|
| ticket.resolved      | TicketChanged status=resolved                           |
| csat.received        | SystemEventAdded csat-rated (``hub.csat``)              |
| contact.erased       | the erasure's transaction (``hub.conversations.contacts``)|
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.conversations import transactions as conversations_tx
from hub.events import (
    ConversationUpdated,
    MessageQueued,
    MessageReceived,
    SystemEventAdded,
    TicketChanged,
    TicketOpened,
    utcnow,
)
from hub.txhooks import After, TxHooks
from hub.webhooks import payloads
from hub.webhooks.sender import WebhookSender
from hub.webhooks.store import enqueue_event, new_event_key, prune_deliveries

if TYPE_CHECKING:
    from hub.events import Clock
    from hub.storage import Database

log = logging.getLogger(__name__)


class Webhooks:
    """Registers the hooks on ``hooks`` (the hub's, shared with tickets) and
    wakes ``sender`` after a commit that queued something."""

    def __init__(self, hooks: TxHooks, sender: WebhookSender) -> None:
        self.hooks = hooks
        self.sender = sender
        self._removers: list[Callable[[], None]] = []

    def start(self) -> None:
        self._removers = [
            self.hooks.add(MessageReceived, self._received_tx),
            self.hooks.add(MessageQueued, self._queued_tx),
            self.hooks.add(ConversationUpdated, self._conversation_tx),
            self.hooks.add(TicketOpened, self._opened_tx),
            self.hooks.add(TicketChanged, self._ticket_tx),
            self.hooks.add(SystemEventAdded, self._csat_tx),
        ]

    def stop(self) -> None:
        for remove in self._removers:
            remove()
        self._removers = []

    async def _wake(self) -> None:
        self.sender.notify()

    def _woken(self, added: int) -> After | None:
        return self._wake if added else None

    def _message(
        self, conn: Connection, message_id: int, contact_id: int, conversation_id: int, at: Any
    ) -> After | None:
        return self._woken(
            enqueue_event(
                conn,
                "message.created",
                lambda: payloads.message_created(conn, message_id),
                event_key=f"message.created:{message_id}",
                now=utcnow(),
                occurred_at=at,
                contact_id=contact_id,
                conversation_id=conversation_id,
            )
        )

    def _received_tx(self, conn: Connection, event: MessageReceived) -> After | None:
        return self._message(conn, event.message_id, event.contact_id, event.conversation_id, event.at)

    def _queued_tx(self, conn: Connection, event: MessageQueued) -> After | None:
        return self._message(conn, event.message_id, event.contact_id, event.conversation_id, event.at)

    def _conversation_tx(self, conn: Connection, event: ConversationUpdated) -> After | None:
        def build() -> dict[str, Any]:
            return {
                "conversation": payloads.conversation(conn, event.conversation_id),
                "changes": payloads.plain(event.changes),
                "actor_id": event.actor_id,
            }

        return self._about_conversation(conn, "conversation.updated", event.conversation_id, build, event.at)

    def _about_conversation(
        self,
        conn: Connection,
        name: str,
        conversation_id: int,
        build: Callable[[], dict[str, Any] | None],
        at: Any,
        event_key: str | None = None,
    ) -> After | None:
        conversation = conversations_tx.get_conversation(conn, conversation_id)
        return self._woken(
            enqueue_event(
                conn,
                name,
                build,
                event_key=event_key or new_event_key(name),
                now=utcnow(),
                occurred_at=at,
                contact_id=conversation.contact_id,
                conversation_id=conversation_id,
            )
        )

    def _ticket(self, conn: Connection, name: str, event: TicketOpened | TicketChanged, **extra: Any) -> After | None:
        def build() -> dict[str, Any]:
            return {"ticket": payloads.ticket(conn, event.ticket_id), **extra}

        key = f"{name}:{event.ticket_id}" if name == "ticket.opened" else None
        return self._about_conversation(conn, name, event.conversation_id, build, event.at, key)

    def _opened_tx(self, conn: Connection, event: TicketOpened) -> After | None:
        afters = [self._ticket(conn, "ticket.opened", event)]
        if event.assignee_id is not None:  # routed to an agent as it opened
            afters.append(self._ticket(conn, "ticket.assigned", event, assignee_id=event.assignee_id, actor_id=None))
        return self._wake if any(afters) else None

    def _ticket_tx(self, conn: Connection, event: TicketChanged) -> After | None:
        afters = []
        if "assignee_id" in event.changes:
            afters.append(
                self._ticket(
                    conn, "ticket.assigned", event, assignee_id=event.changes["assignee_id"], actor_id=event.actor_id
                )
            )
        if event.changes.get("status") == "resolved":
            afters.append(self._ticket(conn, "ticket.resolved", event, actor_id=event.actor_id))
        return self._wake if any(afters) else None

    def _csat_tx(self, conn: Connection, event: SystemEventAdded) -> After | None:
        if event.event != "csat-rated":
            return None
        line = conversations_tx.get_message(conn, event.message_id)
        survey_id = line.meta.get("survey_id")
        if not isinstance(survey_id, int):
            return None

        def build() -> dict[str, Any] | None:
            survey = payloads.survey(conn, survey_id)
            return None if survey is None else {"survey": survey}

        return self._about_conversation(
            conn, "csat.received", event.conversation_id, build, event.at, f"csat.received:{survey_id}"
        )


PRUNE_SECONDS = 3600.0


async def prune_log(db: Database, clock: Clock, *, days: int) -> int:
    """The delivery log's retention (HUB_WEBHOOK_LOG_DAYS): finished deliveries
    older than ``days`` go, in batches; how many. One instance runs it."""
    before = clock.now() - timedelta(days=days)
    deleted = 0
    while batch := await db.write(prune_deliveries, before):
        deleted += batch
    if deleted:
        log.info("webhook delivery log: %d deliveries past %d days deleted", deleted, days)
    return deleted


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The hooks from the start (before anything that produces events runs
    its first pass), the sender until the end; it drains on shutdown."""
    settings = app[keys.SETTINGS]
    sender = WebhookSender(
        app[keys.DATABASE],
        allow_private=settings.webhook_allow_private,
        timeout=settings.webhook_timeout,
        on_result=app[keys.METRICS].webhook_result,
        max_attempts=settings.webhook_max_attempts,
        base_delay=settings.webhook_base_delay,
        max_delay=settings.webhook_max_delay,
        concurrency=settings.webhook_concurrency,
        poll_interval=settings.webhook_poll_interval,
        lease_seconds=settings.webhook_timeout * 2 + 30,
    )
    webhooks = Webhooks(app[keys.SERVICE].tx_hooks, sender)
    app[keys.WEBHOOKS] = webhooks
    webhooks.start()
    await sender.open()
    sender.start()
    pruning = asyncio.create_task(
        app[keys.SERVICE].periodically(
            "webhook-log-retention",
            PRUNE_SECONDS,
            lambda: prune_log(app[keys.DATABASE], app[keys.CLOCK], days=settings.webhook_log_days),
        ),
        name="webhook-log-retention",
    )
    try:
        yield
    finally:
        pruning.cancel()
        await asyncio.gather(pruning, return_exceptions=True)
        webhooks.stop()
        await sender.stop()
        await sender.close()
