"""Rows -> domain dataclasses."""

from __future__ import annotations

from typing import Any

from hub.models import (
    AuthorKind,
    Contact,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    Handler,
    Identity,
    Message,
    MessageKind,
    Priority,
    Role,
    User,
)


def identity(row: Any) -> Identity:
    return Identity(
        id=row.id,
        contact_id=row.contact_id,
        channel=row.channel,
        address=row.address,
        created_at=row.created_at,
    )


def contact(row: Any, identities: list[Identity] | None = None) -> Contact:
    identities = identities or []
    email = next((i.address for i in identities if i.channel == "email"), None)
    phone = next((i.address for i in identities if i.channel == "phone"), None)
    return Contact(
        id=row.id,
        name=row.name,
        email=email,
        phone=phone,
        attributes=dict(row.attributes or {}),
        tags=list(row.tags or []),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def conversation(row: Any, **changes: Any) -> Conversation:
    """The conversation in ``row``; ``changes`` replace some of its columns
    (cheaper than ``dataclasses.replace`` on the frozen result)."""
    values = {
        "id": row.id,
        "contact_id": row.contact_id,
        "channel": row.channel,
        "identity_id": row.identity_id,
        "thread_key": row.thread_key,
        "status": ConversationStatus(row.status),
        "priority": Priority(row.priority),
        "handler": Handler(row.handler),
        "assignee_id": row.assignee_id,
        "subject": row.subject,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "last_message_at": row.last_message_at,
        "resolved_at": row.resolved_at,
    }
    if changes:
        values.update(changes)
    return Conversation(**values)


def message(row: Any) -> Message:
    return Message(
        id=row.id,
        conversation_id=row.conversation_id,
        contact_id=row.contact_id,
        channel=row.channel,
        direction=Direction(row.direction),
        kind=MessageKind(row.kind),
        author_kind=AuthorKind(row.author_kind),
        author_id=row.author_id,
        body=row.body,
        attachments=list(row.attachments or []),
        external_id=row.external_id,
        delivery_status=DeliveryStatus(row.delivery_status),
        meta=dict(row.meta or {}),
        created_at=row.created_at,
        delivery_error=getattr(row, "delivery_error", None),
    )


def user(row: Any) -> User:
    return User(
        id=row.id,
        name=row.name,
        email=row.email,
        role=Role(row.role),
        slack_user_id=row.slack_user_id,
        created_at=row.created_at,
        extra=dict(row.extra or {}),
    )
