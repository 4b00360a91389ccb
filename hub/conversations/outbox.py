"""Durable outbound deliveries: the ``outbox`` queue (``hub.jobs``) and its handler.

Every outbound message is written to ``outbox`` in the same transaction as
its timeline entry (``hub.conversations.transactions.queue_outbound``). The
worker claims due rows with a lease, hands them to their channel and records
the result (with the message's ``delivery_status``, in the same transaction):

- success -> ``delivered``;
- retryable failure (timeouts, 5xx, 429) -> back to ``pending`` with
  exponential backoff and full jitter (or the provider's Retry-After);
- permanent failure or too many attempts -> ``dead`` (dead letters are
  listed by the API and can be retried by an admin).

A crash while a row is ``sending`` leaves its lease to expire; the row is
then claimed again and re-sent with the same idempotency key, so a channel
(or its provider) can drop the duplicate. Within one conversation rows go out
in order: a row is only claimed when no older row of its conversation is
still on its way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Unpack

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from hub.errors import ChannelSendError
from hub.events import DeliveryFailed, MessageDelivered
from hub.jobs.queue import DEAD, PENDING, Queue, QueueSpec
from hub.jobs.worker import JobWorker, Tuning
from hub.messages import ChannelAdapter, OutboundMessage, SendResult
from hub.models import DeliveryStatus
from hub.storage import Database
from hub.storage.schema import messages, outbox

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


# Built once, like the queue's own statements: it runs with every delivery.
_SET_DELIVERY_STATUS = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("message_id"))
    .values(delivery_status=sa.bindparam("status"))
)


def _delivered(conn: Connection, item: Delivery, result: SendResult) -> None:
    status = DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.SENT
    conn.execute(_SET_DELIVERY_STATUS, {"message_id": item.message_id, "status": status.value})


def _failed(conn: Connection, item: Delivery) -> None:
    conn.execute(_SET_DELIVERY_STATUS, {"message_id": item.message_id, "status": DeliveryStatus.FAILED.value})


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
        on_dead=_failed,
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
        on_result: Callable[[str, str], None] | None = None,
        **tuning: Unpack[Tuning],
    ) -> None:
        options: Tuning = {"max_attempts": 8, "concurrency": 16}
        options.update(tuning)
        super().__init__(
            db,
            OUTBOX,
            self.send,
            name="outbox-worker",
            on_done=self._on_delivered,
            on_failed=self._on_failed,
            **options,
        )
        self.channels = channels
        self.publish = publish
        self.on_result = on_result or (lambda channel, outcome: None)

    async def send(self, item: Delivery) -> SendResult:
        channel = self.channels.get(item.channel)
        if channel is None:
            raise ChannelSendError(f"channel {item.channel!r} is not enabled", retryable=True)
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
        )
        return await channel.send(message)

    async def _on_delivered(self, item: Delivery, result: SendResult) -> None:
        self.on_result(item.channel, "delivered")
        await self.publish(
            MessageDelivered(message_id=item.message_id, channel=item.channel, provider_id=result.provider_id)
        )

    async def _on_failed(self, item: Delivery, error: ChannelSendError, dead: bool) -> None:
        self.on_result(item.channel, "dead" if dead else "retry")
        await self.publish(
            DeliveryFailed(message_id=item.message_id, channel=item.channel, error=error.message, dead=dead)
        )
