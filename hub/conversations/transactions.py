"""Conversation transactions: ingest, replies, notes, status changes.

Each function here runs inside ONE database transaction (see
``hub.storage.Database.write``) and returns plain data; ``hub.conversations.service``
publishes events after the commit, so subscribers never see rolled-back work.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.conversations import contacts as contacts_tx
from hub.errors import InvalidInput, NotFound
from hub.events import utcnow
from hub.messages import InboundMessage
from hub.models import (
    AuthorKind,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    Handler,
    Message,
    MessageKind,
    Priority,
)
from hub.storage import PerDialect, batch_of, insert_ignore, rows
from hub.storage.driver import DriverStatement
from hub.storage.schema import bot_jobs, conversations, identities, messages, outbox, users

_ADDRESS = sa.select(identities.c.address).where(identities.c.id == sa.bindparam("identity_id"))


@dataclass(slots=True)
class Ingested:
    message: Message
    conversation: Conversation
    duplicate: bool
    new_conversation: bool = False
    merged_contact_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Queued:
    message: Message
    conversation: Conversation
    outbox_id: int | None


_CONVERSATION = sa.select(conversations).where(conversations.c.id == sa.bindparam("conversation_id"))
_MESSAGE = sa.select(messages).where(messages.c.id == sa.bindparam("message_id"))


def get_conversation(conn: Connection, conversation_id: int) -> Conversation:
    row = conn.execute(_CONVERSATION, {"conversation_id": conversation_id}).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    return rows.conversation(row)


def get_message(conn: Connection, message_id: int) -> Message:
    row = conn.execute(_MESSAGE, {"message_id": message_id}).first()
    if row is None:
        raise NotFound(f"message {message_id} does not exist")
    return rows.message(row)


def _insert_message(conn: Connection, **values: Any) -> Message:
    values.setdefault("attachments", [])
    values.setdefault("meta", {})
    values.setdefault("created_at", utcnow())
    row = conn.execute(sa.insert(messages).values(**values).returning(*messages.c)).one()
    return rows.message(row)


def add_event(
    conn: Connection,
    conversation: Conversation,
    body: str,
    *,
    event: str,
    actor_id: int | None = None,
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Message:
    """A system event on the timeline (assigned, escalated, resolved...)."""
    return _internal_entry(
        conn,
        conversation,
        MessageKind.EVENT,
        AuthorKind.SYSTEM,
        actor_id,
        body,
        meta={"event": event, **(meta or {})},
        created_at=now or utcnow(),
    )


def _internal_entry(
    conn: Connection,
    conversation: Conversation,
    kind: MessageKind,
    author_kind: AuthorKind,
    author_id: int | None,
    body: str,
    **values: Any,
) -> Message:
    """A timeline entry only agents see: an internal note or a system event."""
    return _insert_message(
        conn,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel=conversation.channel,
        direction=Direction.INTERNAL.value,
        kind=kind.value,
        author_kind=author_kind.value,
        author_id=author_id,
        body=body,
        delivery_status=DeliveryStatus.NONE.value,
        **values,
    )


# The ingest path runs for every inbound message: its statements are built
# once (SQLAlchemy then reuses their compiled form and cache keys), and it
# reads back nothing it already knows.
_BY_EXTERNAL_ID = sa.select(messages).where(
    messages.c.channel == sa.bindparam("channel"), messages.c.external_id == sa.bindparam("external_id")
)
# What a customer's message does to its conversation: last_message_at, and
# pending or snoozed becomes open.
_TOUCH_VALUES = {
    "last_message_at": sa.bindparam("now", type_=conversations.c.updated_at.type),
    "updated_at": sa.bindparam("now", type_=conversations.c.updated_at.type),
    # Two comparisons, not IN (...): an IN list is an "expanding" parameter
    # that SQLAlchemy re-renders on every execution.
    "status": sa.case(
        (
            sa.or_(
                conversations.c.status == ConversationStatus.PENDING.value,
                conversations.c.status == ConversationStatus.SNOOZED.value,
            ),
            ConversationStatus.OPEN.value,
        ),
        else_=conversations.c.status,
    ),
}
_TOUCH_CONVERSATION = DriverStatement(
    sa.update(conversations).where(conversations.c.id == sa.bindparam("conversation_id")).values(_TOUCH_VALUES)
)
_INSERT_MESSAGE = PerDialect(
    lambda conn: DriverStatement(
        insert_ignore(conn, messages)
        .values({c.key: sa.bindparam(c.key) for c in messages.c if c.key != "id"})
        .on_conflict_do_nothing()
        .returning(messages.c.id)
    )
)
# A known sender's identity, its latest conversation on the channel (all
# columns, NULL when it has none) and the id of an already stored copy of
# this delivery (a provider retry), in one round trip.
_earlier = conversations.alias("earlier")
_LATEST_FOR_IDENTITY = (
    sa.select(sa.func.max(_earlier.c.id))
    .where(_earlier.c.identity_id == identities.c.id, _earlier.c.channel == sa.bindparam("channel"))
    .correlate(identities)
    .scalar_subquery()
)


def _senders_with_latest(*columns: Any) -> Any:
    """Identities (``kind``) with their latest conversation on ``channel``
    (all its columns; NULL when there is none yet)."""
    return sa.select(
        *columns,
        identities.c.id.label("sender_identity_id"),
        identities.c.contact_id.label("sender_contact_id"),
        *conversations.c,
    ).select_from(identities.outerjoin(conversations, conversations.c.id == _LATEST_FOR_IDENTITY))


_KNOWN_SENDER = DriverStatement(
    _senders_with_latest(
        sa.select(messages.c.id)
        .where(messages.c.channel == sa.bindparam("channel"), messages.c.external_id == sa.bindparam("external_id"))
        .scalar_subquery()
        .label("duplicate_id"),
    ).where(identities.c.channel == sa.bindparam("kind"), identities.c.address == sa.bindparam("address"))
)
_INSERT_BOT_JOB = DriverStatement(
    sa.insert(bot_jobs).values(
        {
            key: sa.bindparam(key)
            for key in (
                "conversation_id",
                "message_id",
                "kind",
                "status",
                "attempts",
                "next_attempt_at",
                "created_at",
                "updated_at",
            )
        }
    )
)


def ingest(
    conn: Connection,
    inbound: InboundMessage,
    *,
    identity_kind: str,
    reopen_window: timedelta,
    enqueue_bot: bool = False,
) -> Ingested:
    """Store one inbound message: resolve the contact, find or open the
    conversation, insert the message; a known ``(channel, external_id)``
    returns the stored message instead (a provider retry)."""
    now = utcnow()
    address = contacts_tx.normalise_address(identity_kind, inbound.sender)
    known = None
    if conn.dialect.name == "sqlite" and not inbound.thread_key and not inbound.contact_hints:
        # The common case (a known sender writing again) in one statement.
        # SQLite only: PostgreSQL takes the path below, which locks the
        # conversation row against a concurrent first message.
        known = _KNOWN_SENDER.first(
            conn,
            {"channel": inbound.channel, "external_id": inbound.external_id, "kind": identity_kind, "address": address},
        )
        if known is not None and known.duplicate_id is not None:
            return _duplicate(conn, conn.execute(_MESSAGE, {"message_id": known.duplicate_id}).one())
    if known is None:
        if inbound.external_id is not None:
            existing = conn.execute(
                _BY_EXTERNAL_ID, {"channel": inbound.channel, "external_id": inbound.external_id}
            ).first()
            if existing is not None:
                return _duplicate(conn, existing)
        contact_id, identity_id, _ = contacts_tx.resolve_identity(
            conn, identity_kind, address, name=inbound.sender_name, now=now
        )
    else:
        contact_id, identity_id = known.sender_contact_id, known.sender_identity_id
    merged: list[int] = []
    if inbound.contact_hints:
        contact_id, merged = _apply_hints(conn, contact_id, inbound)

    # A known sender's row carries their latest conversation (all NULL: none yet).
    latest = _UNFETCHED if known is None else (known if known.id is not None else None)
    conversation, created = _find_or_open(conn, inbound, contact_id, identity_id, reopen_window, now, latest=latest)
    values = _inbound_values(inbound, conversation.id, contact_id, now)
    row = _INSERT_MESSAGE(conn).first(conn, values)
    if row is None:  # lost a race with a concurrent retry of the same delivery
        existing = conn.execute(_BY_EXTERNAL_ID, {"channel": inbound.channel, "external_id": inbound.external_id}).one()
        return _duplicate(conn, existing)
    _TOUCH_CONVERSATION.execute(conn, {"conversation_id": conversation.id, "now": now})
    if enqueue_bot and conversation.handler == Handler.BOT:
        _INSERT_BOT_JOB.execute(conn, _bot_job(conversation.id, row.id, now))
    return Ingested(
        message=_inbound_message(values, row.id),
        conversation=_touched(conversation, now),
        duplicate=False,
        new_conversation=created,
        merged_contact_ids=merged,
    )


# The batch form's statements (SQLite): the known senders among a run's
# addresses with their latest conversation on the channel, the run's
# deliveries that are already stored, and a multi-row INSERT per run length.
# The lists travel as one JSON parameter, so each statement has one SQL text.
def _json_list(name: str) -> Any:
    return sa.select(sa.column("value")).select_from(sa.func.json_each(sa.bindparam(name, type_=sa.JSON)))


_KNOWN_SENDERS = DriverStatement(
    _senders_with_latest(identities.c.address.label("sender_address")).where(
        identities.c.channel == sa.bindparam("kind"), identities.c.address.in_(_json_list("addresses"))
    )
)
_STORED_DELIVERIES = DriverStatement(
    sa.select(messages.c.external_id).where(
        messages.c.channel == sa.bindparam("channel"), messages.c.external_id.in_(_json_list("external_ids"))
    )
)
_TOUCH_CONVERSATIONS = DriverStatement(
    sa.update(conversations).where(conversations.c.id.in_(_json_list("conversation_ids"))).values(_TOUCH_VALUES)
)
_MESSAGE_COLUMNS = [c for c in messages.c if c.key != "id"]
_INSERT_MESSAGES: dict[int, DriverStatement] = {}


# Columns every customer message has the same value in (``_inbound_values``):
# fixed values of the multi-row INSERT, not parameters bound for every row.
_INBOUND_CONSTANTS: dict[str, Any] = {
    "direction": Direction.INBOUND.value,
    "kind": MessageKind.MESSAGE.value,
    "author_kind": AuthorKind.CUSTOMER.value,
    "author_id": None,
    "delivery_status": DeliveryStatus.RECEIVED.value,
}


def _insert_messages(count: int) -> DriverStatement:
    stmt = _INSERT_MESSAGES.get(count)
    if stmt is None:

        def value(column: sa.Column[Any], i: int) -> Any:
            if column.key in _INBOUND_CONSTANTS:
                constant = _INBOUND_CONSTANTS[column.key]
                return sa.null() if constant is None else sa.literal(constant, type_=column.type)
            # One parameter for every row's created_at: they were stored together.
            return sa.bindparam("now" if column.key == "created_at" else f"{column.key}_{i}", type_=column.type)

        stmt = _INSERT_MESSAGES[count] = DriverStatement(
            sa.insert(messages)
            .values([{c.key: value(c, i) for c in _MESSAGE_COLUMNS} for i in range(count)])
            .returning(messages.c.id)
        )
    return stmt


@batch_of(ingest)
def ingest_many(
    conn: Connection,
    batch: Sequence[InboundMessage],
    *,
    identity_kind: str,
    reopen_window: timedelta,
    enqueue_bot: bool = False,
) -> list[Ingested]:
    """``ingest`` for several deliveries in one transaction, in order.

    The steady state of a busy hub (known senders writing into their live
    conversation) is stored with a handful of statements for a whole run of
    messages instead of three per message: one lookup of the senders, one of
    already stored copies, one multi-row INSERT and one UPDATE of the
    conversations. Anything else (a new sender, a thread key, contact hints,
    a resolved conversation, a retried delivery) goes through ``ingest``
    after the run before it has been stored, and the lookups are redone for
    the messages after it.

    SQLite only, where the writer is the only one; elsewhere it is a loop
    over ``ingest``, which locks what a concurrent writer could change."""
    single = {"identity_kind": identity_kind, "reopen_window": reopen_window, "enqueue_bot": enqueue_bot}
    if conn.dialect.name != "sqlite":
        return [ingest(conn, inbound, **single) for inbound in batch]
    channel = batch[0].channel
    # Messages that may take the run path have their address here; None: ``ingest``.
    addresses: list[str | None] = []
    for inbound in batch:
        address = None
        if inbound.channel == channel and not inbound.thread_key and not inbound.contact_hints:
            try:
                address = contacts_tx.normalise_address(identity_kind, inbound.sender)
            except InvalidInput:  # ``ingest`` raises it for this message
                pass
        addresses.append(address)
    results: list[Ingested] = []
    while len(results) < len(batch):
        start = len(results)
        run: list[tuple[InboundMessage, Any]] = []
        if addresses[start] is not None:
            senders, stored = _look_up(conn, channel, identity_kind, batch[start:], addresses[start:])
            for inbound, address in zip(batch[start:], addresses[start:]):
                row = senders.get(address) if address is not None else None
                if (
                    row is None
                    or row.id is None  # no conversation on this channel yet
                    or row.contact_id != row.sender_contact_id
                    or row.status == ConversationStatus.RESOLVED.value
                    or inbound.external_id in stored  # a retry, or a second copy in this run
                ):
                    break
                if inbound.external_id is not None:
                    stored.add(inbound.external_id)
                run.append((inbound, row))
        results.extend(_store_run(conn, run, enqueue_bot))
        if len(results) < len(batch):
            results.append(ingest(conn, batch[len(results)], **single))
    return results


def _look_up(
    conn: Connection, channel: str, kind: str, batch: Sequence[InboundMessage], addresses: list[str | None]
) -> tuple[dict[str, Any], set[str | None]]:
    wanted = sorted({a for a in addresses if a is not None})
    senders = {
        row.sender_address: row
        for row in _KNOWN_SENDERS.all(conn, {"kind": kind, "channel": channel, "addresses": wanted})
    }
    external_ids = sorted({m.external_id for m in batch if m.external_id is not None})
    stored: set[str | None] = set()
    if external_ids:
        stored.update(
            row.external_id for row in _STORED_DELIVERIES.all(conn, {"channel": channel, "external_ids": external_ids})
        )
    return senders, stored


def _store_run(conn: Connection, run: list[tuple[InboundMessage, Any]], enqueue_bot: bool) -> list[Ingested]:
    """Store messages of known senders into their live conversations."""
    if not run:
        return []
    now = utcnow()
    values = [_inbound_values(inbound, row.id, row.sender_contact_id, now) for inbound, row in run]
    params = {
        f"{key}_{i}": value
        for i, row_values in enumerate(values)
        for key, value in row_values.items()
        if key not in _INBOUND_CONSTANTS
    }
    params["now"] = now
    ids = sorted(row.id for row in _insert_messages(len(values)).all(conn, params))
    # SQLite numbers the rows of one INSERT in the order of its VALUES (each
    # new rowid is the largest plus one) but does not promise to RETURN them
    # in that order: sorted, they match. Anything else fails the batch, and
    # the writer replays it one message at a time.
    if len(ids) != len(values) or ids[-1] - ids[0] != len(ids) - 1:
        raise RuntimeError(f"a multi-row INSERT of {len(values)} messages returned ids {ids}")
    touched: dict[int, Conversation] = {}
    for _, row in run:
        if row.id not in touched:
            status = _touched_status(ConversationStatus(row.status))
            touched[row.id] = rows.conversation(row, status=status, last_message_at=now, updated_at=now)
    _TOUCH_CONVERSATIONS.execute(conn, {"conversation_ids": list(touched), "now": now})
    if enqueue_bot:
        jobs = [
            _bot_job(v["conversation_id"], message_id, now)
            for v, message_id in zip(values, ids)
            if touched[v["conversation_id"]].handler == Handler.BOT
        ]
        if jobs:
            _INSERT_BOT_JOB.execute_many(conn, jobs)
    return [
        Ingested(
            message=_inbound_message(v, message_id),
            conversation=touched[v["conversation_id"]],
            duplicate=False,
        )
        for v, message_id in zip(values, ids)
    ]


def _inbound_values(inbound: InboundMessage, conversation_id: int, contact_id: int, now: datetime) -> dict[str, Any]:
    """The ``messages`` row of a customer's message."""
    return {
        "conversation_id": conversation_id,
        "contact_id": contact_id,
        "channel": inbound.channel,
        **_INBOUND_CONSTANTS,
        "body": inbound.text,
        "attachments": list(inbound.attachments),
        "external_id": inbound.external_id,
        "meta": inbound.metadata,
        "created_at": now,
    }


def _inbound_message(values: dict[str, Any], message_id: int) -> Message:
    """The stored message, from what was stored (the INSERT returns the id only)."""
    return Message(
        id=message_id,
        conversation_id=values["conversation_id"],
        contact_id=values["contact_id"],
        channel=values["channel"],
        direction=Direction.INBOUND,
        kind=MessageKind.MESSAGE,
        author_kind=AuthorKind.CUSTOMER,
        author_id=None,
        body=values["body"],
        attachments=values["attachments"],
        external_id=values["external_id"],
        delivery_status=DeliveryStatus.RECEIVED,
        meta=dict(values["meta"]),
        created_at=values["created_at"],
    )


def _bot_job(conversation_id: int, message_id: int, now: datetime) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "message_id": message_id,
        "kind": "message",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _touched_status(status: ConversationStatus) -> ConversationStatus:
    """A conversation's status once its customer has written (``_TOUCH_VALUES``)."""
    return ConversationStatus.OPEN if status in (ConversationStatus.PENDING, ConversationStatus.SNOOZED) else status


def _touched(conversation: Conversation, now: datetime) -> Conversation:
    """``conversation`` as ``_TOUCH_VALUES`` leaves it."""
    return dataclasses.replace(
        conversation, status=_touched_status(conversation.status), last_message_at=now, updated_at=now
    )


def _duplicate(conn: Connection, existing: Any) -> Ingested:
    return Ingested(
        message=rows.message(existing),
        conversation=get_conversation(conn, existing.conversation_id),
        duplicate=True,
    )


def _apply_hints(conn: Connection, contact_id: int, inbound: InboundMessage) -> tuple[int, list[int]]:
    merged: list[int] = []
    if not inbound.hints_verified:
        contact = contacts_tx.get_contact(conn, contact_id)
        unverified = {f"{k}_unverified": v for k, v in inbound.contact_hints.items() if k in ("email", "phone")}
        extra = {k: v for k, v in inbound.contact_hints.items() if k not in ("email", "phone")}
        attributes = {**contact.attributes, **unverified, **extra}
        values: dict[str, Any] = {"attributes": attributes}
        if inbound.contact_hints.get("name") and not contact.name:
            values["name"] = inbound.contact_hints["name"]
        contacts_tx.update_contact(conn, contact_id, values)
        return contact_id, merged
    for kind in ("email", "phone"):
        if kind in inbound.contact_hints:
            address = contacts_tx.normalise_address(kind, inbound.contact_hints[kind])
            gone = contacts_tx.add_identity(conn, contact_id, kind, address)
            if gone is not None:
                merged.append(gone)
                if gone == contact_id:
                    row = contacts_tx.find_identity(conn, kind, address)
                    contact_id = row.contact_id
    return contact_id, merged


_latest = sa.select(conversations).order_by(conversations.c.id.desc()).limit(1)
_by_thread = _latest.where(
    conversations.c.channel == sa.bindparam("channel"), conversations.c.thread_key == sa.bindparam("thread_key")
)
_by_identity = _latest.where(
    conversations.c.identity_id == sa.bindparam("identity_id"), conversations.c.channel == sa.bindparam("channel")
)
# PostgreSQL: lock the row so two concurrent first messages agree on one conversation.
_LATEST_BY_THREAD = {False: _by_thread, True: _by_thread.with_for_update()}
_LATEST_BY_IDENTITY = {False: _by_identity, True: _by_identity.with_for_update()}


_UNFETCHED: Any = object()


def _find_or_open(
    conn: Connection,
    inbound: InboundMessage,
    contact_id: int,
    identity_id: int,
    reopen_window: timedelta,
    now: datetime,
    *,
    latest: Any = _UNFETCHED,
) -> tuple[Conversation, bool]:
    """The conversation ``inbound`` belongs to, opened if needed; ``latest``
    is the sender's latest conversation row when the caller already has it."""
    if latest is _UNFETCHED:
        lock = conn.dialect.name == "postgresql"
        if inbound.thread_key:
            stmt = _LATEST_BY_THREAD[lock]
            params = {"channel": inbound.channel, "thread_key": inbound.thread_key}
        else:
            stmt = _LATEST_BY_IDENTITY[lock]
            params = {"channel": inbound.channel, "identity_id": identity_id}
        latest = conn.execute(stmt, params).first()
    row = latest
    if row is not None and row.contact_id == contact_id:
        conversation = rows.conversation(row)
        if conversation.status != ConversationStatus.RESOLVED:
            return conversation, False
        if conversation.resolved_at and now - conversation.resolved_at <= reopen_window:
            conn.execute(
                sa.update(conversations)
                .where(conversations.c.id == conversation.id)
                .values(
                    status=ConversationStatus.OPEN.value, handler=Handler.BOT.value, resolved_at=None, updated_at=now
                )
            )
            reopened = get_conversation(conn, conversation.id)
            add_event(conn, reopened, "Conversation reopened by the customer", event="reopened", now=now)
            return reopened, False
    row = conn.execute(
        _OPEN_CONVERSATION,
        {
            "contact_id": contact_id,
            "channel": inbound.channel,
            "identity_id": identity_id,
            "thread_key": inbound.thread_key,
            "subject": inbound.subject or None,
            "now": now,
        },
    ).one()
    return rows.conversation(row), True


_OPEN_CONVERSATION = (
    sa.insert(conversations)
    .values(
        contact_id=sa.bindparam("contact_id"),
        channel=sa.bindparam("channel"),
        identity_id=sa.bindparam("identity_id"),
        thread_key=sa.bindparam("thread_key"),
        status=ConversationStatus.OPEN.value,
        priority=Priority.NORMAL.value,
        handler=Handler.BOT.value,
        subject=sa.bindparam("subject"),
        created_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
    .returning(*conversations.c)
)


def queue_outbound(
    conn: Connection,
    conversation_id: int,
    text: str,
    *,
    author_kind: AuthorKind,
    author_id: int | None = None,
    to: str,
    idempotency_key: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    subject: str | None = None,
) -> Queued:
    """Store an outbound message and its delivery in the outbox, atomically.

    A repeated ``idempotency_key`` (an API client retrying a POST) returns
    the message queued the first time.
    """
    if not text or not text.strip():
        raise InvalidInput("reply text is empty")
    conversation = get_conversation(conn, conversation_id)
    key = idempotency_key or uuid.uuid4().hex
    existing = conn.execute(_OUTBOX_BY_KEY, {"key": key}).first()
    if existing is not None:
        return Queued(message=get_message(conn, existing.message_id), conversation=conversation, outbox_id=existing.id)
    now = utcnow()
    row = conn.execute(
        _INSERT_MESSAGE_ROW,
        {
            "conversation_id": conversation.id,
            "contact_id": conversation.contact_id,
            "channel": conversation.channel,
            "direction": Direction.OUTBOUND.value,
            "kind": MessageKind.MESSAGE.value,
            "author_kind": author_kind.value,
            "author_id": author_id,
            "body": text,
            "attachments": attachments or [],
            "external_id": None,
            "delivery_status": DeliveryStatus.QUEUED.value,
            "meta": meta or {},
            "created_at": now,
        },
    ).one()
    payload = {
        "to": to,
        "text": text,
        "subject": subject or conversation.subject,
        "thread_key": conversation.thread_key,
        "attachments": attachments or [],
        "metadata": meta or {},
    }
    outbox_id = conn.execute(
        _INSERT_OUTBOX,
        {
            "message_id": row.id,
            "conversation_id": conversation.id,
            "channel": conversation.channel,
            "idempotency_key": key,
            "payload": payload,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    conn.execute(_TOUCH_LAST_MESSAGE, {"conversation_id": conversation.id, "now": now})
    return Queued(
        message=rows.message(row),
        conversation=dataclasses.replace(conversation, last_message_at=now, updated_at=now),
        outbox_id=outbox_id,
    )


_OUTBOX_BY_KEY = sa.select(outbox.c.id, outbox.c.message_id).where(outbox.c.idempotency_key == sa.bindparam("key"))
_INSERT_MESSAGE_ROW = sa.insert(messages).returning(*messages.c)
_INSERT_OUTBOX = sa.insert(outbox).returning(outbox.c.id)
_TOUCH_LAST_MESSAGE = (
    sa.update(conversations)
    .where(conversations.c.id == sa.bindparam("conversation_id"))
    .values(
        last_message_at=sa.bindparam("now", type_=conversations.c.updated_at.type),
        updated_at=sa.bindparam("now", type_=conversations.c.updated_at.type),
    )
)


def add_note(conn: Connection, conversation_id: int, text: str, *, author_id: int | None) -> Message:
    if not text or not text.strip():
        raise InvalidInput("note text is empty")
    conversation = get_conversation(conn, conversation_id)
    return _internal_entry(conn, conversation, MessageKind.NOTE, AuthorKind.AGENT, author_id, text)


def update_conversation(
    conn: Connection, conversation_id: int, changes: dict[str, Any], *, actor_id: int | None
) -> tuple[Conversation, dict[str, Any]]:
    """Change status, priority, assignee, handler or subject; every change is
    recorded on the timeline as a system event. Returns what really changed."""
    conversation = get_conversation(conn, conversation_id)
    allowed = {"status", "priority", "assignee_id", "handler", "subject"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    applied: dict[str, Any] = {}
    now = utcnow()
    if "status" in changes:
        status = _enum(ConversationStatus, changes["status"], "status")
        if status != conversation.status:
            values["status"] = status.value
            values["resolved_at"] = now if status == ConversationStatus.RESOLVED else None
            applied["status"] = status.value
    if "priority" in changes:
        priority = _enum(Priority, changes["priority"], "priority")
        if priority != conversation.priority:
            values["priority"] = applied["priority"] = priority.value
    if "handler" in changes:
        handler = _enum(Handler, changes["handler"], "handler")
        if handler != conversation.handler:
            values["handler"] = applied["handler"] = handler.value
    if "assignee_id" in changes:
        assignee = changes["assignee_id"]
        if assignee is not None:
            if not isinstance(assignee, int) or isinstance(assignee, bool):
                raise InvalidInput("assignee_id must be an integer or null")
            if conn.execute(sa.select(users.c.id).where(users.c.id == assignee)).first() is None:
                raise InvalidInput(f"user {assignee} does not exist")
        if assignee != conversation.assignee_id:
            values["assignee_id"] = applied["assignee_id"] = assignee
    if "subject" in changes and changes["subject"] != conversation.subject:
        values["subject"] = applied["subject"] = changes["subject"]
    if not values:
        return conversation, {}
    values["updated_at"] = now
    conn.execute(sa.update(conversations).where(conversations.c.id == conversation_id).values(**values))
    updated = get_conversation(conn, conversation_id)
    for key, value in applied.items():
        if key == "subject":
            continue
        label = {"assignee_id": "assignee"}.get(key, key)
        text = f"{label.capitalize()} changed to {value if value is not None else 'nobody'}"
        add_event(conn, updated, text, event=f"{label}-changed", actor_id=actor_id, meta={label: value}, now=now)
    return updated, applied


def _enum(kind: type, value: Any, field_name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidInput(f"{field_name} must be one of {allowed}") from None


def list_conversations(
    conn: Connection,
    *,
    status: str | None = None,
    priority: str | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    channel: str | None = None,
    contact_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Conversation]:
    stmt = sa.select(conversations).order_by(conversations.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(conversations.c.status == _enum(ConversationStatus, status, "status").value)
    if priority:
        stmt = stmt.where(conversations.c.priority == _enum(Priority, priority, "priority").value)
    if assignee_id is not None:
        stmt = stmt.where(conversations.c.assignee_id == assignee_id)
    if unassigned:
        stmt = stmt.where(conversations.c.assignee_id.is_(None))
    if channel:
        stmt = stmt.where(conversations.c.channel == channel)
    if contact_id is not None:
        stmt = stmt.where(conversations.c.contact_id == contact_id)
    if after_id is not None:
        stmt = stmt.where(conversations.c.id < after_id)
    return [rows.conversation(r) for r in conn.execute(stmt)]


def recipient_address(conn: Connection, conversation: Conversation) -> str:
    if conversation.identity_id is None:
        raise InvalidInput(f"conversation {conversation.id} has no customer address to reply to")
    row = conn.execute(_ADDRESS, {"identity_id": conversation.identity_id}).first()
    if row is None:
        raise InvalidInput(f"conversation {conversation.id} has no customer address to reply to")
    return row.address
