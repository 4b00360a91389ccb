"""The webhook tables: endpoints (an admin's) and deliveries (a durable queue).

``enqueue_event`` is what the tx hooks call: one delivery row per active
endpoint subscribed to the event type, in the caller's transaction.
``enqueue_delivery`` queues one signed delivery to one endpoint, whatever it
subscribes to (the ping; automation rules' "call a webhook" action): the
row is the promise, the worker (``hub.webhooks.sender``) keeps it.

A little over 400 lines: the endpoints and their deliveries stay together,
since every delivery query is scoped by its endpoint and the enqueue reads
the endpoints' subscriptions.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import Conflict, InvalidInput, NotFound
from hub.jobs.queue import DEAD, PENDING, Queue, QueueSpec
from hub.models import _Serialisable
from hub.storage import PerDialect, insert_ignore
from hub.storage.driver import DriverStatement
from hub.storage.schema import webhook_deliveries, webhook_endpoints
from hub.webhooks.destinations import check_url
from hub.webhooks.signing import new_secret

SENDING, DELIVERED = "sending", "delivered"
# The event types an endpoint subscribes to; "*" is every one of them.
EVENT_TYPES = (
    "message.created",
    "conversation.updated",
    "ticket.opened",
    "ticket.assigned",
    "ticket.resolved",
    "csat.received",
    "contact.erased",
)
ALL = "*"
PING = "ping"  # sent on request only, never subscribed to
DESCRIPTION_MAX = 500
SECRET_MIN, SECRET_MAX = 16, 200
GRACE_MAX = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the worker needs of a claimed row."""

    id: int
    endpoint_id: int
    event: str
    idempotency_key: str
    ordering_key: str | None
    payload: dict[str, Any]
    attempts: int


WEBHOOK_DELIVERIES: Queue[Delivery] = Queue(
    QueueSpec(
        "webhooks",
        webhook_deliveries,
        group="ordering_key",
        item=Delivery,
        noun="webhook delivery",
        done=DELIVERED,
        running=SENDING,
        done_columns=("response_status", "delivered_at"),
        done_values=lambda result: {"response_status": result[0], "delivered_at": result[1]},
    )
)


@dataclass(frozen=True, slots=True)
class Endpoint(_Serialisable):
    id: int
    url: str
    events: list[str]
    active: bool
    description: str
    created_at: datetime
    updated_at: datetime
    # Until when the previous secret still signs (a rotation's grace), or None.
    previous_secret_until: datetime | None


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row.id,
        url=row.url,
        events=list(row.events),
        active=bool(row.active),
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        previous_secret_until=row.previous_secret_until,
    )


# --- endpoints (the admin's side) -------------------------------------------------------


def check_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events:
        raise InvalidInput("'events' must be a non-empty list of event types", details={"field": "events"})
    unknown = [e for e in events if e not in (*EVENT_TYPES, ALL)]
    if unknown:
        raise InvalidInput(
            f"'events' has an unknown event type; known: {', '.join(EVENT_TYPES)} or {ALL!r} for all",
            details={"field": "events"},
        )
    return [ALL] if ALL in events else sorted(set(events), key=EVENT_TYPES.index)


def check_secret(secret: Any) -> str:
    if not isinstance(secret, str) or not SECRET_MIN <= len(secret) <= SECRET_MAX or not secret.isascii():
        raise InvalidInput(
            f"'secret' must be {SECRET_MIN} to {SECRET_MAX} ASCII characters", details={"field": "secret"}
        )
    if not secret.isprintable() or any(ch.isspace() for ch in secret):
        raise InvalidInput("'secret' must not hold spaces or control characters", details={"field": "secret"})
    return secret


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > DESCRIPTION_MAX:
        raise InvalidInput(
            f"'description' must be text of at most {DESCRIPTION_MAX} characters", details={"field": "description"}
        )
    return value.strip()


def list_endpoints(conn: Connection) -> list[Endpoint]:
    return [_endpoint(r) for r in conn.execute(sa.select(webhook_endpoints).order_by(webhook_endpoints.c.id))]


def _row(conn: Connection, endpoint_id: int) -> Any:
    row = conn.execute(sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return row


def get_endpoint(conn: Connection, endpoint_id: int) -> Endpoint:
    return _endpoint(_row(conn, endpoint_id))


def create_endpoint(
    conn: Connection, values: dict[str, Any], *, allow_private: bool, now: datetime
) -> tuple[Endpoint, str]:
    """A new endpoint and its secret (given, or generated: shown this once)."""
    url = check_url(values.get("url"), allow_private=allow_private)  # type: ignore[arg-type]  # checked there
    events = check_events(values.get("events"))
    secret = check_secret(values["secret"]) if values.get("secret") is not None else new_secret()
    active = values.get("active", True)
    if not isinstance(active, bool):
        raise InvalidInput("'active' must be true or false", details={"field": "active"})
    endpoint_id = conn.execute(
        sa.insert(webhook_endpoints)
        .values(
            url=url,
            secret=secret,
            events=events,
            active=active,
            description=_description(values.get("description") or ""),
            created_at=now,
            updated_at=now,
        )
        .returning(webhook_endpoints.c.id)
    ).scalar_one()
    return get_endpoint(conn, endpoint_id), secret


def update_endpoint(
    conn: Connection, endpoint_id: int, changes: dict[str, Any], *, allow_private: bool, now: datetime
) -> Endpoint:
    _row(conn, endpoint_id)
    values: dict[str, Any] = {}
    if "url" in changes:
        values["url"] = check_url(changes["url"], allow_private=allow_private)
    if "events" in changes:
        values["events"] = check_events(changes["events"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise InvalidInput("'active' must be true or false", details={"field": "active"})
        values["active"] = changes["active"]
    if "description" in changes:
        values["description"] = _description(changes["description"] or "")
    if values:
        conn.execute(
            sa.update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(**values, updated_at=now)
        )
    return get_endpoint(conn, endpoint_id)


def rotate_secret(
    conn: Connection, endpoint_id: int, *, secret: str | None, grace: timedelta, now: datetime
) -> tuple[Endpoint, str]:
    """A new secret; the old one keeps signing beside it for ``grace`` (0: not at all)."""
    if not timedelta(0) <= grace <= GRACE_MAX:
        raise InvalidInput("'grace_seconds' must be from 0 to 604800 (7 days)", details={"field": "grace_seconds"})
    row = _row(conn, endpoint_id)
    new = check_secret(secret) if secret is not None else new_secret()
    if new == row.secret:
        raise InvalidInput("'secret' must differ from the current one", details={"field": "secret"})
    conn.execute(
        sa.update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(
            secret=new,
            previous_secret=row.secret if grace else None,
            previous_secret_until=now + grace if grace else None,
            updated_at=now,
        )
    )
    return get_endpoint(conn, endpoint_id), new


def delete_endpoint(conn: Connection, endpoint_id: int) -> None:
    """The endpoint and its deliveries (the foreign key cascades)."""
    _row(conn, endpoint_id)
    conn.execute(sa.delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id))
    conn.execute(sa.delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint as the sender needs it at send time."""

    url: str
    active: bool
    secrets: tuple[str, ...]  # the current one first; the previous one during its grace


def target_of(conn: Connection, endpoint_id: int, now: datetime) -> Target | None:
    row = conn.execute(sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).first()
    if row is None:
        return None
    signing = [row.secret]
    if row.previous_secret and row.previous_secret_until is not None and row.previous_secret_until > now:
        signing.append(row.previous_secret)
    return Target(url=row.url, active=bool(row.active), secrets=tuple(signing))


# --- deliveries (the producer's side) ----------------------------------------------------


def delivery_key(endpoint_id: int, event_key: str) -> str:
    """The delivery's id for the receiver: one per endpoint and event."""
    digest = hashlib.sha256(f"{endpoint_id}:{event_key}".encode()).hexdigest()[:32]
    return f"whd_{digest}"


def new_event_key(event: str) -> str:
    """For an event with no natural id (a change): unique per occurrence."""
    return f"{event}:{uuid.uuid4().hex}"


# What runs in the ingest transaction of every message while an endpoint
# takes message.created: straight on the driver (``hub.storage.driver``).
_SUBSCRIBERS = DriverStatement(
    sa.select(webhook_endpoints.c.id, webhook_endpoints.c.events)
    .where(webhook_endpoints.c.active.is_(True))
    .order_by(webhook_endpoints.c.id)
)
_QUEUED_COLUMNS = ("endpoint_id", "event", "idempotency_key", "ordering_key", "contact_id", "payload")
_INSERT_DELIVERY = PerDialect(
    lambda conn: DriverStatement(
        insert_ignore(conn, webhook_deliveries)
        .values(
            {
                **{key: sa.bindparam(key, type_=webhook_deliveries.c[key].type) for key in _QUEUED_COLUMNS},
                "status": PENDING,
                "attempts": 0,
                **{
                    column: sa.bindparam("now", type_=webhook_deliveries.c[column].type)
                    for column in ("next_attempt_at", "created_at", "updated_at")
                },
            }
        )
        .on_conflict_do_nothing()
        .returning(webhook_deliveries.c.id)
    )
)


def enqueue_delivery(
    conn: Connection,
    endpoint_id: int,
    event: str,
    data: dict[str, Any],
    *,
    event_key: str,
    now: datetime,
    occurred_at: datetime | None = None,
    contact_id: int | None = None,
    conversation_id: int | None = None,
) -> int | None:
    """Queue ``event`` with ``data`` to one endpoint, in the caller's
    transaction. ``event_key`` names the event (the same key again queues
    nothing: returns None); ``contact_id`` when ``data`` holds a contact's
    data (an erasure takes the row along); ``conversation_id`` keeps that
    conversation's deliveries to the endpoint in order; ``occurred_at``
    (default ``now``) is the payload's ``created_at``."""
    key = delivery_key(endpoint_id, event_key)
    payload = {"id": key, "event": event, "created_at": (occurred_at or now).isoformat(), "data": data}
    row = _INSERT_DELIVERY(conn).first(
        conn,
        {
            "endpoint_id": endpoint_id,
            "event": event,
            "idempotency_key": key,
            "ordering_key": f"{endpoint_id}:{conversation_id}" if conversation_id is not None else None,
            "contact_id": contact_id,
            "payload": payload,
            "now": now,
        },
    )
    return None if row is None else int(row.id)


def subscribers(conn: Connection, event: str) -> list[int]:
    """The active endpoints that take ``event``."""
    return [row.id for row in _SUBSCRIBERS.all(conn, {}) if event in row.events or ALL in row.events]


def enqueue_event(
    conn: Connection,
    event: str,
    build: Callable[[], dict[str, Any] | None],
    *,
    event_key: str,
    now: datetime,
    occurred_at: datetime | None = None,
    contact_id: int | None = None,
    conversation_id: int | None = None,
) -> int:
    """One delivery per subscribed endpoint; ``build`` makes the data, only
    when someone subscribes (None: nothing to send). Returns the rows added."""
    endpoint_ids = subscribers(conn, event)
    if not endpoint_ids:
        return 0
    data = build()
    if data is None:
        return 0
    added = 0
    for endpoint_id in endpoint_ids:
        queued = enqueue_delivery(
            conn,
            endpoint_id,
            event,
            data,
            event_key=event_key,
            now=now,
            occurred_at=occurred_at,
            contact_id=contact_id,
            conversation_id=conversation_id,
        )
        added += queued is not None
    return added


# --- deliveries (the admin's side) -------------------------------------------------------

LISTED = (
    "id",
    "endpoint_id",
    "event",
    "idempotency_key",
    "status",
    "attempts",
    "response_status",
    "last_error",
    "next_attempt_at",
    "delivered_at",
    "created_at",
    "updated_at",
)


def _delivery(row: Any) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in LISTED}
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in values.items()}


def list_deliveries(conn: Connection, endpoint_id: int, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    _row(conn, endpoint_id)
    stmt = (
        sa.select(*(webhook_deliveries.c[name] for name in LISTED))
        .where(webhook_deliveries.c.endpoint_id == endpoint_id)
        .order_by(webhook_deliveries.c.id.desc())
        .limit(limit)
    )
    if status:
        stmt = stmt.where(webhook_deliveries.c.status == status)
    return [_delivery(row) for row in conn.execute(stmt)]


def get_delivery(conn: Connection, endpoint_id: int, delivery_id: int) -> dict[str, Any]:
    row = conn.execute(
        sa.select(*(webhook_deliveries.c[name] for name in LISTED)).where(
            webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.endpoint_id == endpoint_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id} of webhook endpoint {endpoint_id}")
    return _delivery(row)


def redeliver(conn: Connection, endpoint_id: int, delivery_id: int, now: datetime) -> dict[str, Any]:
    """A delivered or dead delivery goes again (same id for the receiver),
    attempts from zero; one still on its way is a conflict."""
    current = get_delivery(conn, endpoint_id, delivery_id)
    changed = conn.execute(
        sa.update(webhook_deliveries)
        .where(webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.status.in_((DELIVERED, DEAD)))
        .values(status=PENDING, attempts=0, next_attempt_at=now, lease_until=None, updated_at=now)
    ).rowcount
    if not changed:
        raise Conflict(f"delivery {delivery_id} is still {current['status']}: it goes out on its own")
    return get_delivery(conn, endpoint_id, delivery_id)


def record_response(conn: Connection, delivery_id: int, status: int | None) -> None:
    """The receiver's status of a failed attempt (success records it with the row's ``done``)."""
    conn.execute(
        sa.update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(response_status=status)
    )


PRUNE_BATCH = 2000  # rows deleted per statement: short transactions beside the sender's


def prune_deliveries(conn: Connection, before: datetime) -> int:
    """Delete up to ``PRUNE_BATCH`` finished deliveries (delivered, or dead and
    not redelivered) last touched before ``before``; how many went. Pending
    and sending rows are never pruned, whatever their age."""
    old = (
        sa.select(webhook_deliveries.c.id)
        .where(webhook_deliveries.c.status.in_((DELIVERED, DEAD)), webhook_deliveries.c.updated_at < before)
        .limit(PRUNE_BATCH)
    )
    return int(conn.execute(sa.delete(webhook_deliveries).where(webhook_deliveries.c.id.in_(old))).rowcount or 0)
