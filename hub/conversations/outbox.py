"""Durable outbound deliveries: the ``outbox`` queue (``hub.jobs``) and its handler.

Every outbound message is written to ``outbox`` in the same transaction as
its timeline entry (``hub.conversations.transactions.queue_outbound``). The
worker claims due rows with a lease, hands them to their channel and records
the result (with the message's ``delivery_status``, in the same transaction):

- success -> ``delivered``;
- retryable failure (timeouts, 5xx, 429) -> back to ``pending`` with
  exponential backoff and full jitter (or the provider's Retry-After);
- permanent failure or too many attempts -> ``dead`` (dead letters are
  listed by the API and can be retried by an admin); the message keeps the
  reason (``delivery_error``) and a system line on its timeline tells the
  agent, in Slack too (``SystemEventAdded``), in the same transaction.

Before a send, a channel that honours opt-outs or has a reply window
(``hub.conversations.consent``) may refuse it: a dead letter with the reason.
A channel whose provider reports delivery later returns the provider's ids
(``SendResult.provider_ids``); they are recorded with the send
(``hub.conversations.delivery``) so reports find their message.

A crash while a row is ``sending`` leaves its lease to expire; the row is
then claimed again and re-sent with the same idempotency key, so a channel
(or its provider) can drop the duplicate. Within one conversation rows go out
in order: a row is only claimed when no older row of its conversation is
still on its way.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from hub.conversations import consent, delivery, offline
from hub.conversations.transactions import add_event, get_conversation
from hub.errors import ChannelSendError
from hub.events import DeliveryFailed, MessageDelivered, SystemEventAdded, utcnow
from hub.jobs.queue import DEAD, PENDING, Queue, QueueSpec
from hub.jobs.worker import JobWorker, Tuning
from hub.messages import ChannelAdapter, OutboundMessage, SendResult
from hub.models import AuthorKind, DeliveryStatus
from hub.storage import Database
from hub.storage.schema import messages, outbox
from hub.txhooks import After, TxHooks, run_afters

log = logging.getLogger(__name__)

SENDING, DELIVERED = "sending", "delivered"
__all__ = ["DEAD", "DELIVERED", "OUTBOX", "PENDING", "SENDING", "Delivery", "OutboxWorker"]


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    message_id: int
    conversation_id: int
    channel: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


# Built once, like the queue's own statements: they run with every delivery.
_SET_DELIVERY_STATUS = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("message_id"))
    .values(delivery_status=sa.bindparam("status"))
)
# A send's result moves the message on from "queued" only: a delivery report
# that overtook it (Twilio calls back within milliseconds) stays.
_MARK_SENT = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("message_id"), messages.c.delivery_status == DeliveryStatus.QUEUED.value)
    .values(delivery_status=sa.bindparam("status"))
)
_SET_FAILED = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("message_id"))
    .values(delivery_status=DeliveryStatus.FAILED.value, delivery_error=sa.bindparam("error"))
)


def _delivered(conn: Connection, item: Delivery, result: SendResult) -> None:
    status = DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.SENT
    conn.execute(_MARK_SENT, {"message_id": item.message_id, "status": status.value})
    if result.provider_ids:
        delivery.record_parts(conn, item.message_id, item.channel, result.provider_ids, utcnow())


def failure_text(error: ChannelSendError) -> str:
    text = f"{error.provider_code}: {error.message}" if error.provider_code else error.message
    return text[:300]


def _failed(conn: Connection, item: Delivery, error: ChannelSendError) -> None:
    conn.execute(_SET_FAILED, {"message_id": item.message_id, "error": failure_text(error)})


def _requeued(conn: Connection, row: Row[Any]) -> None:
    conn.execute(_SET_DELIVERY_STATUS, {"message_id": row.message_id, "status": DeliveryStatus.QUEUED.value})


OUTBOX: Queue[Delivery] = Queue(
    QueueSpec(
        "outbox",
        outbox,
        group="conversation_id",
        item=Delivery,
        noun="delivery",
        unlisted=("idempotency_key",),  # the channel's business; it can be long
        done=DELIVERED,
        running=SENDING,
        done_columns=("provider_id",),
        done_values=lambda result: {"provider_id": result.provider_id},
        on_done=_delivered,
        on_dead=_failed,  # the worker adds the timeline line and the opt-out
        on_requeue=_requeued,
    )
)

Publish = Callable[[Any], Awaitable[None]]


class OutboxWorker(JobWorker[Delivery]):
    """Claims due deliveries and sends them; ``notify()`` wakes it at once."""

    def __init__(
        self,
        db: Database,
        channels: dict[str, ChannelAdapter],
        publish: Publish,
        *,
        tx_hooks: TxHooks | None = None,
        chat_link: str | None = None,
        on_result: Callable[[str, str], None] | None = None,
        **tuning: Unpack[Tuning],
    ) -> None:
        options: Tuning = {"max_attempts": 8, "concurrency": 16}
        options.update(tuning)
        # The outbox queue with this worker's dead-letter work (it runs the
        # hub's in-transaction hooks); claims and records are OUTBOX's own.
        queue = Queue(dataclasses.replace(OUTBOX.spec, on_done=self._done_tx, on_dead=self._dead_tx))
        super().__init__(
            db,
            queue,
            self.send,
            name="outbox-worker",
            on_done=self._on_delivered,
            on_failed=self._on_failed,
            **options,
        )
        self.channels = channels
        self.publish = publish
        self.tx_hooks = tx_hooks or TxHooks()
        # Where an e-mailed copy of a chat reply sends the visitor back to (HUB_WEBCHAT_PAGE_URL).
        self.chat_link = chat_link
        self.on_result = on_result or (lambda channel, outcome: None)
        self._afters: dict[int, list[After]] = {}

    def _done_tx(self, conn: Connection, item: Delivery, result: SendResult) -> None:
        """In the transaction that records a send: its status and provider ids;
        and the web chat's promise: an agent's reply that found the visitor
        gone goes to their e-mail address too (the widget told them so)."""
        _delivered(conn, item, result)
        if (
            not result.delivered
            and item.channel == "webchat"
            and "email" in self.channels
            and item.payload.get("author_kind") == AuthorKind.AGENT.value
        ):
            offline.email_copy(
                conn, self.queue, item.message_id, item.conversation_id, item.payload, link=self.chat_link
            )

    def _dead_tx(self, conn: Connection, item: Delivery, error: ChannelSendError) -> None:
        """In the transaction that dead-letters ``item``: the reason on the
        message and on the timeline (mirrored to Slack), and an opt-out when
        the provider says the recipient unsubscribed."""
        _failed(conn, item, error)
        conversation = get_conversation(conn, item.conversation_id)
        if error.opted_out:
            consent.provider_opt_out(
                conn,
                contact_id=conversation.contact_id,
                channel=item.channel,
                address=str(item.payload["to"]),
                code=error.provider_code,
                now=utcnow(),
            )
        line = add_event(
            conn,
            conversation,
            f"A message was not sent: {failure_text(error)}",
            event="delivery_failed",
            meta={"message_id": item.message_id},
        )
        event = SystemEventAdded(message_id=line.id, conversation_id=conversation.id, event="delivery_failed")
        self._afters[item.id] = self.tx_hooks.run(conn, event)

    def _refusal(self, conn: Connection, item: Delivery, channel: ChannelAdapter) -> str | None:
        return consent.send_refusal(
            conn,
            channel=item.channel,
            to=str(item.payload["to"]),
            conversation_id=item.conversation_id,
            honours_opt_out=channel.honours_opt_out,
            reply_window=channel.reply_window,
            now=utcnow(),
        )

    async def send(self, item: Delivery) -> SendResult:
        channel = self.channels.get(item.channel)
        if channel is None:
            raise ChannelSendError(f"channel {item.channel!r} is not enabled", retryable=True)
        if channel.honours_opt_out or channel.reply_window is not None:
            refusal = await self.db.read(self._refusal, item, channel)
            if refusal is not None:
                raise ChannelSendError(refusal, retryable=False)
        payload = item.payload
        message = OutboundMessage(
            message_id=item.message_id,
            conversation_id=item.conversation_id,
            channel=item.channel,
            to=payload["to"],
            text=payload["text"],
            idempotency_key=item.idempotency_key,
            subject=payload.get("subject"),
            thread_key=payload.get("thread_key"),
            attachments=tuple(payload.get("attachments") or ()),
            metadata=payload.get("metadata") or {},
            attempt=item.attempts,
            queued_at=item.created_at,
            references=await self.db.read(delivery.references, item) if channel.threads_by_reference else (),
            automated=payload.get("author_kind") in ("bot", "system"),
        )
        return await channel.send(message)

    async def _on_delivered(self, item: Delivery, result: SendResult) -> None:
        self.on_result(item.channel, "delivered")
        await self.publish(
            MessageDelivered(message_id=item.message_id, channel=item.channel, provider_id=result.provider_id)
        )

    async def _on_failed(self, item: Delivery, error: ChannelSendError, dead: bool) -> None:
        await run_afters(self._afters.pop(item.id, ()))
        self.on_result(item.channel, "dead" if dead else "retry")
        await self.publish(
            DeliveryFailed(message_id=item.message_id, channel=item.channel, error=error.message, dead=dead)
        )
