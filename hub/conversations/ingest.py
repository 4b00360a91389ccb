"""The ingest path: one inbound message (``ingest``) or a run of them
(``ingest_many``, its batch form) stored in one transaction.

This runs for every customer message and is performance-tuned: statements are
built once at import, the common case (a known sender writing into a live
conversation) takes one statement on SQLite, and a batch stores whole runs
with multi-row statements (``bench/ingest.py`` measures it). It stays one
module past ~400 lines because its statements, the single form and the batch
form must stay in step: the batch form must store exactly what one-at-a-time
ingest would (``tests/hub/test_ingest_batch.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.conversations import consent
from hub.conversations import contacts as contacts_tx
from hub.conversations.transactions import MESSAGE_BY_ID, add_event, get_conversation
from hub.errors import InvalidInput
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
from hub.storage.schema import bot_jobs, conversations, delivery_parts, identities, messages


@dataclass(slots=True)
class Ingested:
    message: Message
    conversation: Conversation
    duplicate: bool
    new_conversation: bool = False
    merged_contact_ids: list[int] = field(default_factory=list)
    # Set by ``on_stored`` in the transaction (the service's in-transaction
    # hooks): the event to publish after the commit, and what else to do then.
    received: Any = None
    after: list[Any] = field(default_factory=list)


# Called in the transaction for each message stored (never for a duplicate).
OnStored = Callable[[Connection, InboundMessage, Ingested], None]


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
    on_stored: OnStored | None = None,
) -> Ingested:
    """Store one inbound message: resolve the contact, find or open the
    conversation, insert the message; a known ``(channel, external_id)``
    returns the stored message instead (a provider retry)."""
    now = utcnow()
    address = contacts_tx.normalise_address(identity_kind, inbound.sender)
    known = None
    if conn.dialect.name == "sqlite" and _plain(inbound):
        # The common case (a known sender writing again) in one statement.
        # SQLite only: PostgreSQL takes the path below, which locks the
        # conversation row against a concurrent first message.
        known = _KNOWN_SENDER.first(
            conn,
            {"channel": inbound.channel, "external_id": inbound.external_id, "kind": identity_kind, "address": address},
        )
        if known is not None and known.duplicate_id is not None:
            return _duplicate(conn, conn.execute(MESSAGE_BY_ID, {"message_id": known.duplicate_id}).one())
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
    elsewhere, answers = None, False
    if inbound.references or inbound.conversation_hint is not None:
        threaded = _threaded(conn, inbound)
        if (
            threaded is not None
            and threaded.contact_id != contact_id
            and _proves_address(conn, inbound, threaded, address)
        ):
            # They answered the copy the hub e-mailed to the address they typed
            # in the chat: the address is theirs (verified by the round trip).
            gone = contacts_tx.add_identity(conn, threaded.contact_id, identity_kind, address)
            merged.extend([gone] if gone is not None else [])
            contact_id = threaded.contact_id
        if threaded is not None and threaded.contact_id == contact_id:
            latest, answers = threaded, True  # a reply: its conversation, reopened if resolved
        elif threaded is not None:
            latest, elsewhere = None, threaded.id  # someone else's thread: never filed there silently
    # An explicit reply reopens its conversation however long ago it was
    # resolved (a help desk's "solved"); other messages within the window.
    window = timedelta.max if answers else reopen_window
    conversation, created = _find_or_open(conn, inbound, contact_id, identity_id, window, now, latest=latest)
    if elsewhere is not None:
        add_event(
            conn,
            conversation,
            f"This message answers conversation #{elsewhere} by its headers, but its sender is not that "
            "conversation's customer, so it was filed here. If they are the same person, merge the contacts.",
            event="thread_mismatch",
            meta={"conversation_id": elsewhere},
            now=now,
        )
    values = _inbound_values(inbound, conversation.id, contact_id, now)
    row = _INSERT_MESSAGE(conn).first(conn, values)
    if row is None:  # lost a race with a concurrent retry of the same delivery
        existing = conn.execute(_BY_EXTERNAL_ID, {"channel": inbound.channel, "external_id": inbound.external_id}).one()
        return _duplicate(conn, existing)
    _TOUCH_CONVERSATION.execute(conn, {"conversation_id": conversation.id, "now": now})
    if enqueue_bot and conversation.handler == Handler.BOT and for_the_bot(inbound):
        _INSERT_BOT_JOB.execute(conn, _bot_job(conversation.id, row.id, now))
    stored = Ingested(
        message=_inbound_message(values, row.id),
        conversation=_touched(conversation, now),
        duplicate=False,
        new_conversation=created,
        merged_contact_ids=merged,
    )
    if on_stored is not None:
        on_stored(conn, inbound, stored)
    return stored


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
    "delivery_error": None,
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
    on_stored: OnStored | None = None,
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
    single: dict[str, Any] = {
        "identity_kind": identity_kind,
        "reopen_window": reopen_window,
        "enqueue_bot": enqueue_bot,
        "on_stored": on_stored,
    }
    if conn.dialect.name != "sqlite":
        return [ingest(conn, inbound, **single) for inbound in batch]
    channel = batch[0].channel
    # Messages that may take the run path have their address here; None: ``ingest``.
    addresses: list[str | None] = []
    for inbound in batch:
        address = None
        if inbound.channel == channel and _plain(inbound):
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
        stored_run = _store_run(conn, run, enqueue_bot)
        if on_stored is not None:
            for (inbound, _), done in zip(run, stored_run):
                on_stored(conn, inbound, done)
        results.extend(stored_run)
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
            for (inbound, _), v, message_id in zip(run, values, ids)
            if touched[v["conversation_id"]].handler == Handler.BOT and for_the_bot(inbound)
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


def for_the_bot(inbound: InboundMessage) -> bool:
    """Keywords (SMS STOP, START, HELP) are the hub's to handle, not questions;
    what a machine wrote (an auto-reply, bulk mail) is never answered automatically."""
    return inbound.consent is None and inbound.auto_reply is None and not inbound.automated


def _plain(inbound: InboundMessage) -> bool:
    """Filed by its sender alone: no thread key, hints or references (the fast paths)."""
    return (
        not inbound.thread_key
        and not inbound.contact_hints
        and not inbound.references
        and inbound.conversation_hint is None
    )


def _proves_address(conn: Connection, inbound: InboundMessage, threaded: Any, address: str) -> bool:
    """An e-mail from the address a chat visitor typed (unverified), carrying
    the reply token of that visitor's conversation: only that mailbox got it."""
    if inbound.conversation_hint != threaded.id:
        return False
    contact = contacts_tx.get_contact(conn, threaded.contact_id)
    typed = contact.attributes.get("email_unverified")
    if not isinstance(typed, str):
        return False
    try:
        return contacts_tx.normalise_address("email", typed) == address
    except InvalidInput:
        return False


def _threaded(conn: Connection, inbound: InboundMessage) -> Any:
    """The conversation row of the nearest message ``inbound`` answers: one the
    hub received (``external_id``) or sent (``delivery_parts``) on the same
    channel, else the conversation the channel vouches for; None."""
    refs = [ref for ref in inbound.references[:50] if ref]
    found: dict[str, int] = {}
    if refs:
        received = sa.select(messages.c.external_id, messages.c.conversation_id).where(
            messages.c.channel == inbound.channel, messages.c.external_id.in_(refs)
        )
        sent = (
            sa.select(delivery_parts.c.provider_id, messages.c.conversation_id)
            .join(messages, messages.c.id == delivery_parts.c.message_id)
            .where(delivery_parts.c.channel == inbound.channel, delivery_parts.c.provider_id.in_(refs))
        )
        for ref, conversation_id in [*conn.execute(received), *conn.execute(sent)]:
            found.setdefault(ref, conversation_id)
    conversation_id = next((found[ref] for ref in refs if ref in found), inbound.conversation_hint)
    if conversation_id is None:
        return None
    # Any channel's conversation: an e-mail answering the copy of a chat reply
    # (``hub.conversations.offline``) joins the chat's conversation.
    stmt = sa.select(conversations).where(conversations.c.id == conversation_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # as the sender's latest conversation is locked
    return conn.execute(stmt).first()


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
            params: dict[str, Any] = {"channel": inbound.channel, "thread_key": inbound.thread_key}
        else:
            stmt = _LATEST_BY_IDENTITY[lock]
            params = {"channel": inbound.channel, "identity_id": identity_id}
        latest = conn.execute(stmt, params).first()
    row = latest
    if row is not None and row.contact_id == contact_id:
        conversation = rows.conversation(row)
        if conversation.status != ConversationStatus.RESOLVED:
            return conversation, False
        rating = consent.survey_digit(inbound.channel, inbound.text)
        if rating is not None and consent.survey_awaits(conn, conversation.id, now, rating):
            return conversation, False  # a CSAT rating (``hub.csat``) does not reopen it
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
