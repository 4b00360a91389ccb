"""Caches every instance keeps in memory, kept honest across instances.

A cache of something in the database or shared storage (the routing rules,
a knowledge-base collection's keyword index) has a named row in
``shared_versions``. Whoever changes what the cache holds bumps the row: in
the same transaction as the change when the change is in the database (a
routing rule), or right after it when it is elsewhere (an article in Chroma
and the articles folder). Each instance remembers the version its cache was
built at and, at most once per ``interval`` seconds, reads the row (one
primary-key read) before using the cache; a different number means another
instance changed it, and the cache is rebuilt. The database row is the source
of truth: a lost Redis message or a restart can never leave a stale cache
for longer than ``interval``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.storage import Database, insert_ignore
from hub.storage.schema import shared_versions

T = TypeVar("T")

ROUTING_RULES = "routing_rules"
AUTOMATION_RULES = "automation_rules"
CHECK_INTERVAL = 1.0  # seconds a cache is used without looking at its row


def kb_collection(collection: str) -> str:
    """The version name of a knowledge-base collection's keyword index."""
    return f"kb:{collection}"


def bump(conn: Connection, name: str) -> int:
    """Count one change of ``name`` in the caller's transaction; the new version."""
    stmt = insert_ignore(conn, shared_versions).values(name=name, version=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"version": shared_versions.c.version + 1}
    ).returning(shared_versions.c.version)
    return int(conn.execute(stmt).scalar_one())


def current(conn: Connection, name: str) -> int:
    """The version of ``name`` (0 before its first change)."""
    found = conn.execute(sa.select(shared_versions.c.version).where(shared_versions.c.name == name)).scalar()
    return int(found or 0)


class VersionedCache(Generic[T]):
    """A value built from the database, rebuilt when its row's version moves.

    ``get(conn)`` runs in the caller's transaction (a routing decision made
    inside a handoff's transaction reads the rules there); ``fresh()`` says
    whether the value may be used without a database read right now.
    """

    def __init__(
        self,
        name: str,
        build: Callable[[Connection], T],
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.build = build
        self.interval = interval
        self.clock = clock
        self._value: T | None = None
        self._version = -1
        self._checked = float("-inf")

    def fresh(self) -> T | None:
        """The value when it was checked within ``interval``, else None."""
        if self._value is not None and self.clock() - self._checked < self.interval:
            return self._value
        return None

    def get(self, conn: Connection) -> T:
        value = self.fresh()
        if value is not None:
            return value
        checked = self.clock()
        version = current(conn, self.name)  # first: what is built next is at least this new
        value = self._value
        if value is None or version != self._version:
            value = self.build(conn)
            self._value, self._version = value, version
        self._checked = checked
        return value

    def invalidate(self) -> None:
        """This instance changed it: rebuild at the next use."""
        self._value = None


class VersionWatch:
    """For a cache the hub does not build itself (the knowledge base's keyword
    index): ``check(name)`` reads the row at most once per ``interval`` and
    calls ``on_change(name)`` when it moved since the last look;
    ``wrote(name)`` bumps it after this instance's own change."""

    def __init__(
        self,
        db: Database,
        on_change: Callable[[str], Awaitable[None] | None],
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.on_change = on_change
        self.interval = interval
        self.clock = clock
        self._seen: dict[str, int] = {}
        self._checked: dict[str, float] = {}

    async def check(self, name: str) -> None:
        now = self.clock()
        if now - self._checked.get(name, float("-inf")) < self.interval:
            return
        self._checked[name] = now
        version = await self.db.read(current, name)
        seen = self._seen.get(name)
        self._seen[name] = version
        if seen is not None and seen != version:
            result = self.on_change(name)
            if result is not None:
                await result

    async def wrote(self, name: str) -> None:
        version = await self.db.write(bump, name)
        # Our own change is in our cache already; one of someone else's in
        # between is not, so only a step of exactly one is taken as ours.
        if self._seen.get(name) == version - 1:
            self._seen[name] = version
