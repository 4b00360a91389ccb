"""What providers say happened to what the hub sent (delivery reports).

A send returns the provider's ids (one per part of a long SMS); the outbox
records them as ``delivery_parts`` in the transaction that marks the send
done. Reports (Twilio's StatusCallback) then move each part, and the message's
``delivery_status`` follows its parts: the most advanced status all parts
reached, or the failure when one failed. Statuses only move forward, so a
late or repeated report ("sent" after "delivered") changes nothing.

A report may overtake the recorded send (Twilio calls back within
milliseconds): the channel then names the message (``DeliveryReport.message_id``,
from the signed callback URL) and the part is recorded from the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.messages import DeliveryReport
from hub.models import DeliveryStatus, Direction
from hub.storage import insert_ignore
from hub.storage.schema import delivery_parts, messages

# How far along a status is; failures are final.
RANK: dict[str, int] = {
    DeliveryStatus.QUEUED.value: 0,
    DeliveryStatus.SENT.value: 1,
    DeliveryStatus.DELIVERED.value: 2,
    DeliveryStatus.UNDELIVERED.value: 3,
    DeliveryStatus.FAILED.value: 3,
}
FAILURES = frozenset({DeliveryStatus.UNDELIVERED.value, DeliveryStatus.FAILED.value})
REPORTED = frozenset(RANK)


@dataclass(frozen=True, slots=True)
class Reported:
    """The outcome of one report: the message it moved and where to."""

    message_id: int
    conversation_id: int
    status: str
    changed: bool  # the message's status moved
    newly_failed: bool  # ...and it moved to a failure
    error: str | None


def record_parts(conn: Connection, message_id: int, channel: str, parts: Iterable[str], now: datetime) -> None:
    """The provider ids of a send, as sent (reports that came first keep theirs)."""
    rows = [
        {
            "message_id": message_id,
            "channel": channel,
            "provider_id": part[:64],
            "status": DeliveryStatus.SENT.value,
            "error_code": None,
            "updated_at": now,
        }
        for part in parts
    ]
    if rows:
        conn.execute(insert_ignore(conn, delivery_parts).on_conflict_do_nothing(), rows)


def error_text(report: DeliveryReport) -> str | None:
    if report.status not in FAILURES:
        return None
    code = report.error_code or "no code"
    reason = report.error_message or f"the provider reported {report.status}"
    return f"{code}: {reason}"[:300]


def apply_report(conn: Connection, report: DeliveryReport, now: datetime) -> Reported | None:
    """Move a part and its message; None when no outbound message of that
    channel has that provider id (or the named message is not one)."""
    if report.status not in REPORTED:
        return None
    part = conn.execute(
        sa.select(delivery_parts.c.message_id, delivery_parts.c.status).where(
            delivery_parts.c.channel == report.channel, delivery_parts.c.provider_id == report.provider_id
        )
    ).first()
    message_id = part.message_id if part is not None else report.message_id
    if message_id is None:
        return None
    # The message row first, locked (PostgreSQL; SQLite has one writer): the
    # outbox's record of the send locks it before inserting its parts, so a
    # report inserting a part first and the message second would deadlock
    # with it. Its parts are read again under the lock.
    message = conn.execute(
        sa.select(messages.c.id, messages.c.conversation_id, messages.c.delivery_status)
        .where(
            messages.c.id == message_id,
            messages.c.channel == report.channel,
            messages.c.direction == Direction.OUTBOUND.value,
        )
        .with_for_update()
    ).first()
    if message is None:
        return None
    part = conn.execute(
        sa.select(delivery_parts.c.message_id, delivery_parts.c.status).where(
            delivery_parts.c.channel == report.channel, delivery_parts.c.provider_id == report.provider_id
        )
    ).first()
    if part is None:
        conn.execute(
            insert_ignore(conn, delivery_parts)
            .values(
                message_id=message_id,
                channel=report.channel,
                provider_id=report.provider_id[:64],
                status=report.status,
                error_code=report.error_code,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
    elif RANK[report.status] > RANK.get(part.status, 0):
        conn.execute(
            sa.update(delivery_parts)
            .where(delivery_parts.c.channel == report.channel, delivery_parts.c.provider_id == report.provider_id)
            .values(status=report.status, error_code=report.error_code, updated_at=now)
        )
    statuses = list(
        conn.execute(sa.select(delivery_parts.c.status).where(delivery_parts.c.message_id == message_id)).scalars()
    )
    failed = [status for status in statuses if status in FAILURES]
    overall = failed[-1] if failed else min(statuses, key=lambda status: RANK[status])
    current = message.delivery_status
    if RANK.get(current, -1) >= RANK[overall] or current in FAILURES:
        return Reported(message_id, message.conversation_id, current, changed=False, newly_failed=False, error=None)
    error = error_text(report) if overall in FAILURES else None
    conn.execute(
        sa.update(messages).where(messages.c.id == message_id).values(delivery_status=overall, delivery_error=error)
    )
    return Reported(
        message_id,
        message.conversation_id,
        overall,
        changed=True,
        newly_failed=overall in FAILURES,
        error=error,
    )


def references(conn: Connection, item: Any, limit: int = 20) -> tuple[str, ...]:
    """The provider ids of a conversation's messages before ``item`` (its
    ``message_id``, ``conversation_id``), newest first: what a reply threads
    by (e-mail's In-Reply-To and References)."""
    received = sa.select(messages.c.id, messages.c.external_id.label("ref")).where(
        messages.c.conversation_id == item.conversation_id,
        messages.c.direction == Direction.INBOUND.value,
        messages.c.external_id.is_not(None),
        messages.c.id < item.message_id,
    )
    sent = (
        sa.select(messages.c.id, delivery_parts.c.provider_id.label("ref"))
        .join(delivery_parts, delivery_parts.c.message_id == messages.c.id)
        .where(messages.c.conversation_id == item.conversation_id, messages.c.id < item.message_id)
    )
    both = sa.union_all(received, sent).subquery()
    found = conn.execute(sa.select(both.c.ref).order_by(both.c.id.desc()).limit(limit)).scalars()
    return tuple(ref for ref in found if ref)
