"""Conversation transactions: replies, notes, status changes (ingest, the hot
path, is ``hub.conversations.ingest``).

Each function here runs inside ONE database transaction (see
``hub.storage.Database.write``) and returns plain data; ``hub.conversations.service``
publishes events after the commit, so subscribers never see rolled-back work.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub import auth
from hub.errors import InvalidInput, NotFound
from hub.events import utcnow
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
    StrEnum,
)
from hub.storage import rows
from hub.storage.schema import conversations, identities, messages, outbox

_ADDRESS = sa.select(identities.c.address).where(identities.c.id == sa.bindparam("identity_id"))


@dataclass(slots=True)
class Queued:
    message: Message
    conversation: Conversation
    outbox_id: int | None
    repeated: bool = False  # a retried idempotency key: the message queued the first time


_CONVERSATION = sa.select(conversations).where(conversations.c.id == sa.bindparam("conversation_id"))
MESSAGE_BY_ID = sa.select(messages).where(messages.c.id == sa.bindparam("message_id"))


def get_conversation(conn: Connection, conversation_id: int) -> Conversation:
    row = conn.execute(_CONVERSATION, {"conversation_id": conversation_id}).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    return rows.conversation(row)


def get_message(conn: Connection, message_id: int) -> Message:
    row = conn.execute(MESSAGE_BY_ID, {"message_id": message_id}).first()
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
        return Queued(
            message=get_message(conn, existing.message_id),
            conversation=conversation,
            outbox_id=existing.id,
            repeated=True,
        )
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
        "author_kind": author_kind.value,
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
            auth.check_assignee(conn, assignee)
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


def _enum(kind: type[StrEnum], value: Any, field_name: str) -> Any:
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
