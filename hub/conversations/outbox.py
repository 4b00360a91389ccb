"""Durable outbound deliveries.

Every outbound message is written to ``outbox`` in the same transaction as
its timeline entry (``hub.conversations.transactions.queue_outbound``). This worker
claims due rows with a lease, hands them to their channel and records the
result:

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

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from channels.base import Channel, OutboundMessage, SendResult
from hub.errors import ChannelSendError, NotFound
from hub.events import DeliveryFailed, MessageDelivered, utcnow
from hub.jobs.worker import PollingWorker
from hub.models import DeliveryStatus
from hub.storage import Database
from hub.storage.schema import messages, outbox

log = logging.getLogger(__name__)

PENDING, SENDING, DELIVERED, DEAD = "pending", "sending", "delivered", "dead"


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    message_id: int
    conversation_id: int
    channel: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
    """Full-jitter exponential backoff (AWS architecture blog): U(0, min(cap, base*2^n))."""
    return rng.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))


def _claim_statements(lock: bool) -> tuple[Any, Any, Any]:
    older = outbox.alias("older")
    blocked = (
        sa.select(older.c.id)
        .where(
            older.c.conversation_id == outbox.c.conversation_id,
            older.c.id < outbox.c.id,
            older.c.status.in_((PENDING, SENDING)),
        )
        .exists()
    )
    now = sa.bindparam("now", type_=outbox.c.next_attempt_at.type)
    due = sa.or_(
        sa.and_(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now),
        sa.and_(outbox.c.status == SENDING, outbox.c.lease_until < now),
    )
    select = sa.select(outbox.c.id).where(due, ~blocked).order_by(outbox.c.id).limit(sa.bindparam("limit"))
    if lock:
        select = select.with_for_update(skip_locked=True, of=outbox)
    ids = sa.bindparam("ids", expanding=True)
    claim = (
        sa.update(outbox)
        .where(outbox.c.id.in_(ids))
        .values(
            status=SENDING,
            lease_until=sa.bindparam("lease_until", type_=outbox.c.lease_until.type),
            attempts=outbox.c.attempts + 1,
            updated_at=now,
        )
    )
    load = sa.select(outbox).where(outbox.c.id.in_(ids)).order_by(outbox.c.id)
    return select, claim, load


# Built once: the worker runs these on every pass.
_CLAIM = {False: _claim_statements(False), True: _claim_statements(True)}
_MARK_DELIVERED = (
    sa.update(outbox)
    .where(outbox.c.id == sa.bindparam("outbox_id"))
    .values(
        status=DELIVERED,
        provider_id=sa.bindparam("provider"),
        lease_until=None,
        last_error=None,
        updated_at=sa.bindparam("now", type_=outbox.c.updated_at.type),
    )
)
_SET_DELIVERY_STATUS = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("message_id"))
    .values(delivery_status=sa.bindparam("status"))
)


def claim_due(conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    select, claim, load = _CLAIM[conn.dialect.name == "postgresql"]
    ids = list(conn.execute(select, {"now": now, "limit": limit}).scalars())
    if not ids:
        return []
    conn.execute(claim, {"ids": ids, "now": now, "lease_until": now + lease})
    return [
        Claimed(
            id=r.id,
            message_id=r.message_id,
            conversation_id=r.conversation_id,
            channel=r.channel,
            idempotency_key=r.idempotency_key,
            payload=dict(r.payload),
            attempts=r.attempts,
        )
        for r in conn.execute(load, {"ids": ids})
    ]


def mark_delivered(conn: Connection, outbox_id: int, message_id: int, result: SendResult) -> None:
    conn.execute(_MARK_DELIVERED, {"outbox_id": outbox_id, "provider": result.provider_id, "now": utcnow()})
    status = DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.SENT
    conn.execute(_SET_DELIVERY_STATUS, {"message_id": message_id, "status": status.value})


def mark_failed(conn: Connection, outbox_id: int, message_id: int, error: str, *, retry_at: datetime | None) -> None:
    now = utcnow()
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None, "updated_at": now}
    if retry_at is None:
        values["status"] = DEAD
        conn.execute(_SET_DELIVERY_STATUS, {"message_id": message_id, "status": DeliveryStatus.FAILED.value})
    else:
        values.update(status=PENDING, next_attempt_at=retry_at)
    conn.execute(sa.update(outbox).where(outbox.c.id == outbox_id).values(**values))


def depth(conn: Connection) -> dict[str, int]:
    found = conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))
    counts = {PENDING: 0, SENDING: 0, DELIVERED: 0, DEAD: 0}
    counts.update({status: n for status, n in found})
    return counts


def list_entries(conn: Connection, status: str | None, limit: int) -> list[dict[str, Any]]:
    stmt = sa.select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(outbox.c.status == status)
    return [
        {
            "id": r.id,
            "message_id": r.message_id,
            "conversation_id": r.conversation_id,
            "channel": r.channel,
            "status": r.status,
            "attempts": r.attempts,
            "next_attempt_at": r.next_attempt_at.isoformat(),
            "last_error": r.last_error,
            "provider_id": r.provider_id,
            "created_at": r.created_at.isoformat(),
        }
        for r in conn.execute(stmt)
    ]


def requeue_dead(conn: Connection, outbox_id: int) -> None:
    row = conn.execute(sa.select(outbox).where(outbox.c.id == outbox_id)).first()
    if row is None or row.status != DEAD:
        raise NotFound(f"no dead delivery {outbox_id}")
    now = utcnow()
    conn.execute(
        sa.update(outbox)
        .where(outbox.c.id == outbox_id)
        .values(status=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
    )
    conn.execute(
        sa.update(messages).where(messages.c.id == row.message_id).values(delivery_status=DeliveryStatus.QUEUED.value)
    )


Publish = Callable[[Any], Awaitable[None]]


class OutboxWorker(PollingWorker[Claimed]):
    """Claims due deliveries and sends them; ``notify()`` wakes it at once."""

    name = "outbox-worker"

    def __init__(
        self,
        db: Database,
        channels: dict[str, Channel],
        publish: Publish,
        *,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        lease_seconds: float = 60.0,
        concurrency: int = 16,
        poll_interval: float = 1.0,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        self.db = db
        self.channels = channels
        self.publish = publish
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = timedelta(seconds=lease_seconds)
        super().__init__(concurrency=concurrency, poll_interval=poll_interval)
        self.on_result = on_result or (lambda channel, outcome: None)

    async def claim(self) -> list[Claimed]:
        return await self.db.write(claim_due, utcnow(), self.lease, self.concurrency * 4)

    def group_of(self, item: Claimed) -> int:
        return item.conversation_id

    async def process(self, item: Claimed) -> bool:
        return await self._deliver(item)

    async def _deliver(self, item: Claimed) -> bool:
        channel = self.channels.get(item.channel)
        payload = item.payload
        if channel is None:
            error = ChannelSendError(f"channel {item.channel!r} is not enabled", retryable=True)
        else:
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
            try:
                result = await channel.send(message)
            except ChannelSendError as err:
                error = err
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a channel bug must not kill the worker
                log.exception("channel %s raised while sending", item.channel)
                error = ChannelSendError(f"{type(err).__name__}: {err}", retryable=True)
            else:
                await self.db.write(mark_delivered, item.id, item.message_id, result)
                self.on_result(item.channel, "delivered")
                await self.publish(
                    MessageDelivered(message_id=item.message_id, channel=item.channel, provider_id=result.provider_id)
                )
                return True
        dead = not error.retryable or item.attempts >= self.max_attempts
        retry_at = None
        if not dead:
            delay = (
                error.retry_after
                if error.retry_after is not None
                else backoff(item.attempts, base=self.base_delay, cap=self.max_delay)
            )
            retry_at = utcnow() + timedelta(seconds=delay)
        log.warning(
            "delivery %s via %s failed (attempt %s, %s): %s",
            item.id,
            item.channel,
            item.attempts,
            "dead" if dead else "will retry",
            error.message,
        )
        await self.db.write(mark_failed, item.id, item.message_id, error.message, retry_at=retry_at)
        self.on_result(item.channel, "dead" if dead else "retry")
        await self.publish(
            DeliveryFailed(message_id=item.message_id, channel=item.channel, error=error.message, dead=dead)
        )
        return False
