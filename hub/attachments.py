"""Files that came with messages: e-mail attachments, inline images, the original .eml.

Content-addressed: a file is stored once under ``<data_dir>/attachments/ab/abcd...``
(its SHA-256), whoever sent it and however often (a provider's retry stores
nothing new). A channel stores the bytes first (``store``, through
``ChannelHost.store_attachment``) and puts the returned metadata in the
message's attachments; ingest then links the message to the file
(``message_attachments``, in the message's transaction). Agents read a file
through ``GET /api/v1/attachments/{id}``.

A file no message holds any more (its messages erased, or a delivery refused
after the bytes were stored) is removed by ``sweep``, which the hub runs
every few minutes and after an erasure; a grace period keeps files that a
channel stored a moment ago and whose message is still on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import NotFound, TooLarge
from hub.events import utcnow
from hub.leases import Lease, every
from hub.storage import Database, insert_ignore
from hub.storage.schema import attachments, message_attachments, messages

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 600.0  # seconds
GRACE = timedelta(hours=1)  # a file stored this recently may still be on its way into a message
_SAFE_TYPE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.+-/")


def content_type_of(value: str | None) -> str:
    """A plain ``type/subtype`` (parameters dropped), or application/octet-stream."""
    kind = (value or "").split(";", 1)[0].strip().lower()
    if kind.count("/") != 1 or not set(kind) <= _SAFE_TYPE or len(kind) > 200:
        return "application/octet-stream"
    return kind


def link(conn: Connection, message_id: int, items: Iterable[dict[str, Any]]) -> None:
    """In the message's transaction: the message holds the stored files it names."""
    ids = sorted({str(item["id"]) for item in items if isinstance(item, dict) and item.get("id")})
    if not ids:
        return
    known = set(conn.execute(sa.select(attachments.c.id).where(attachments.c.id.in_(ids))).scalars())
    rows = [
        {"message_id": message_id, "attachment_id": attachment_id} for attachment_id in ids if attachment_id in known
    ]
    if rows:
        conn.execute(insert_ignore(conn, message_attachments).on_conflict_do_nothing(), rows)


class AttachmentStore:
    def __init__(self, db: Database, root: Path, *, max_bytes: int) -> None:
        self.db = db
        self.root = root
        self.max_bytes = max_bytes

    def path_of(self, attachment_id: str) -> Path:
        if len(attachment_id) != 64 or not all(c in "0123456789abcdef" for c in attachment_id):
            raise NotFound(f"attachment {attachment_id[:80]!r} does not exist")
        return self.root / attachment_id[:2] / attachment_id

    async def store(self, data: bytes, *, filename: str | None, content_type: str) -> dict[str, Any]:
        if len(data) > self.max_bytes:
            raise TooLarge(f"attachment is {len(data)} bytes; HUB_ATTACHMENT_MAX_BYTES allows {self.max_bytes}")
        digest = hashlib.sha256(data).hexdigest()
        kind = content_type_of(content_type)
        await asyncio.to_thread(self._write, self.path_of(digest), data)
        await self.db.write(self._record, digest, kind, len(data), utcnow())
        name = (filename or "").strip()[:255] or None
        return {"id": digest, "sha256": digest, "filename": name, "content_type": kind, "size": len(data)}

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # A partial file of this write alone: the same bytes stored twice at once (a mail
        # delivered again while its first delivery is being stored) must not share one,
        # or the second replace finds it gone.
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            os.fchmod(fd, 0o644)  # as a plain write would leave it, not mkstemp's 0600
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(partial, path)  # atomic: a reader sees the whole file or none
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise

    @staticmethod
    def _record(conn: Connection, digest: str, kind: str, size: int, now: datetime) -> None:
        # Stored again (the same logo in every signature): fresh again, so a
        # sweep that runs meanwhile leaves it to the message on its way.
        stmt = insert_ignore(conn, attachments).values(id=digest, content_type=kind, size=size, created_at=now)
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"created_at": now}))

    async def open(self, attachment_id: str) -> tuple[Path, str, int]:
        """The file, its content type and size; NotFound unless a message holds it."""
        path = self.path_of(attachment_id)
        row = await self.db.read(
            lambda conn: conn.execute(
                sa.select(attachments.c.content_type, attachments.c.size)
                .where(attachments.c.id == attachment_id)
                .where(sa.exists().where(message_attachments.c.attachment_id == attachments.c.id))
            ).first()
        )
        if row is None or not path.exists():
            raise NotFound(f"attachment {attachment_id} does not exist")
        return path, row.content_type, row.size

    async def sweep(self, *, grace: timedelta = GRACE, only: Iterable[str] | None = None) -> int:
        """Remove the files no message holds (stored longer than ``grace``
        ago; ``only``: among these ids, whatever their age); returns how many."""
        cutoff = utcnow() - grace
        wanted = None if only is None else sorted(set(only))
        if wanted == []:
            return 0

        def orphans(conn: Connection) -> list[str]:
            held = sa.exists().where(message_attachments.c.attachment_id == attachments.c.id)
            stmt = sa.select(attachments.c.id).where(~held)
            stmt = (
                stmt.where(attachments.c.id.in_(wanted))
                if wanted is not None
                else stmt.where(attachments.c.created_at < cutoff)
            )
            found = list(conn.execute(stmt).scalars())
            if found:
                conn.execute(sa.delete(attachments).where(attachments.c.id.in_(found), ~held))
            return found

        gone = await self.db.write(orphans)
        for attachment_id in gone:
            await asyncio.to_thread(self.path_of(attachment_id).unlink, missing_ok=True)
        if gone:
            log.info("attachment sweep removed %s files no message holds", len(gone))
        return len(gone)

    @contextlib.asynccontextmanager
    async def sweeping(self, interval: float = SWEEP_INTERVAL, *, lease: Lease | None = None) -> AsyncIterator[None]:
        """While open: a sweep every ``interval`` seconds, on the instance
        holding ``lease`` (``hub.leases.every``; None: this one)."""
        task = asyncio.create_task(
            every(interval, self.sweep, lease=lease, what="attachment sweep"), name="attachment-sweep"
        )
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def held_by_contact(conn: Connection, contact_id: int) -> list[str]:
    """The files a contact's messages hold (an erasure sweeps them after it commits)."""
    return list(
        conn.execute(
            sa.select(message_attachments.c.attachment_id)
            .join(messages, messages.c.id == message_attachments.c.message_id)
            .where(messages.c.contact_id == contact_id)
            .distinct()
        ).scalars()
    )
