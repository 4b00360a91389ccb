"""Leases: of several hub instances, exactly one runs a singleton loop.

A lease is a row in ``leases`` (name, holder, lease_until). ``acquire`` is
one statement, ``INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE`` the row
is ours or has expired, ``RETURNING``: of instances racing for it the
database lets one win, and the holder renews the same way. An instance that
stops releases its leases, so another takes over at its next look; one that
dies simply stops renewing, and another takes over once ``lease_until`` has
passed. Time is the caller's (``now``), so tests move it.

The work done under a lease still claims each item in its own transaction
(an SLA breach is a conditional update, a snooze's wake-up checks the snooze
is still due): a holder that lost its lease without knowing (a long pause,
clocks apart by more than the lease) can at worst do a pass twice, never an
item twice.

``every`` runs a periodic sweep (attachments no message holds, old Slack
event ids, silences for automation rules, the search log's retention) on
the holder of its lease only: the holder renews it every third of the
lease and sweeps every ``interval``; the others look every third of the
lease and take over, sweeping at once, when it was released or expired.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.storage import Database, insert_ignore
from hub.storage.schema import leases

log = logging.getLogger(__name__)


def new_holder() -> str:
    """This instance's name in the ``leases`` table: host, pid and a random part
    (two hubs in one process, as in tests, are two holders)."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(conn: Connection, name: str, holder: str, *, now: datetime, seconds: float) -> bool:
    """Take or renew ``name`` until ``now + seconds``; False while another holds it."""
    until = now + timedelta(seconds=seconds)
    stmt = insert_ignore(conn, leases).values(name=name, holder=holder, lease_until=until)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": excluded.holder, "lease_until": excluded.lease_until},
        where=sa.or_(leases.c.holder == holder, leases.c.lease_until < now),
    ).returning(leases.c.holder)
    return conn.execute(stmt).first() is not None


def release(conn: Connection, name: str, holder: str) -> None:
    """Give ``name`` up (if still ours): another instance takes it at its next look."""
    conn.execute(sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder))


def holder_of(conn: Connection, name: str, *, now: datetime) -> str | None:
    """Who holds ``name`` now (None: nobody, or an expired lease)."""
    return conn.execute(sa.select(leases.c.holder).where(leases.c.name == name, leases.c.lease_until >= now)).scalar()


class Lease:
    """One named lease as one instance sees it: ``hold()`` before each round of
    the loop it guards (takes or renews it; True while ours), ``release()``
    when the loop stops."""

    def __init__(self, db: Database, name: str, *, holder: str, seconds: float, now: Callable[[], datetime]) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self.now = now
        self.held = False

    async def hold(self) -> bool:
        held = await self.db.write(acquire, self.name, self.holder, now=self.now(), seconds=self.seconds)
        if held != self.held:
            log.info("%s the lease %r (%s)", "took" if held else "lost", self.name, self.holder)
        self.held = held
        return held

    async def release(self) -> None:
        if self.held:
            self.held = False
            await self.db.write(release, self.name, self.holder)


class NamedLeases:
    """Leases by name for one holder (``ChannelHost.hold_lease``): a channel
    with one loop per mailbox folder asks for each folder's lease by name."""

    def __init__(self, db: Database, *, holder: str, seconds: float, now: Callable[[], datetime]) -> None:
        self.db = db
        self.holder = holder
        self.seconds = seconds
        self.now = now

    async def hold(self, name: str) -> bool:
        return await self.db.write(acquire, name, self.holder, now=self.now(), seconds=self.seconds)

    async def release(self, name: str) -> None:
        await self.db.write(release, name, self.holder)

    def lease(self, name: str) -> Lease:
        """``name`` as a ``Lease`` of this holder (a loop's ``hold()``/``release()``)."""
        return Lease(self.db, name, holder=self.holder, seconds=self.seconds, now=self.now)


async def every(interval: float, work: Callable[[], Awaitable[object]], *, lease: Lease | None, what: str) -> None:
    """Run ``work`` every ``interval`` seconds while this instance holds
    ``lease`` (None: this is the only instance, it always runs), at once
    when the lease is taken. Runs until cancelled, then releases the lease.
    A failed pass is logged and the loop goes on."""
    loop = asyncio.get_running_loop()
    look = interval if lease is None else min(interval, lease.seconds / 3)
    due: float | None = None  # while ours: when the next pass runs
    try:
        while True:
            try:
                if lease is None or await lease.hold():
                    if due is None or loop.time() >= due:
                        due = loop.time() + interval
                        await work()
                else:
                    due = None
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again later", what)
            wait = look if due is None else max(0.0, min(look, due - loop.time()))
            await asyncio.sleep(wait)
    finally:
        if lease is not None:
            try:
                await lease.release()  # the next instance need not wait for it to expire
            except Exception:
                log.warning("could not release the lease %r; it expires by itself", lease.name, exc_info=True)
