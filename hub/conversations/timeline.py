"""The unified timeline: everything a contact said and was told, on every channel.

Ordered by message id, which the database hands out in the order the hub
stored things; pages are addressed by opaque cursors, not offsets, so a page
never repeats or skips a message while new ones arrive.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import InvalidInput
from hub.models import Message, MessageKind
from hub.storage import rows
from hub.storage.schema import messages

MAX_PAGE = 200


def encode_cursor(message_id: int) -> str:
    return base64.urlsafe_b64encode(f"m:{message_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "m":
            raise ValueError(prefix)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise InvalidInput(f"invalid cursor {cursor!r}") from err


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Message]
    next_cursor: str | None  # pass as ``after`` to get newer items (poll with it)
    prev_cursor: str | None  # pass as ``before`` for older items; None at the start
    has_more: bool = False  # newer items already exist after this page

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [m.to_dict() for m in self.items],
            "next_cursor": self.next_cursor,
            "prev_cursor": self.prev_cursor,
            "has_more": self.has_more,
        }


def page(
    conn: Connection,
    *,
    contact_id: int | None = None,
    conversation_id: int | None = None,
    after: str | None = None,
    before: str | None = None,
    limit: int = 50,
    include_internal: bool = True,
) -> Page:
    """One page, oldest first. ``after``: the page after a cursor; ``before``:
    the page before it; neither: the latest page (what a timeline opens on)."""
    if after and before:
        raise InvalidInput("give either 'after' or 'before', not both")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    scope = []
    if contact_id is not None:
        scope.append(messages.c.contact_id == contact_id)
    if conversation_id is not None:
        scope.append(messages.c.conversation_id == conversation_id)
    if not include_internal:
        scope.append(messages.c.kind == MessageKind.MESSAGE.value)
    stmt = sa.select(messages).where(*scope)
    if after:
        found = conn.execute(
            stmt.where(messages.c.id > decode_cursor(after)).order_by(messages.c.id).limit(limit + 1)
        ).all()
        more_after, items = len(found) > limit, found[:limit]
        more_before = True
    else:
        if before:
            stmt = stmt.where(messages.c.id < decode_cursor(before))
        found = conn.execute(stmt.order_by(messages.c.id.desc()).limit(limit + 1)).all()
        more_before, items = len(found) > limit, list(reversed(found[:limit]))
        more_after = bool(before)
    result = [rows.message(r) for r in items]
    if not result:
        return Page(items=[], next_cursor=after if after else None, prev_cursor=None)
    return Page(
        items=result,
        next_cursor=encode_cursor(result[-1].id),
        prev_cursor=encode_cursor(result[0].id) if more_before else None,
        has_more=more_after,
    )
