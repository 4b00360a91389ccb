"""Storage chosen by URL scheme: SQLite (default) or PostgreSQL.

Every query is written once, as a plain function over a SQLAlchemy Core
``Connection``; a ``Database`` decides where it runs:

- SQLite (``sqlite:///``, ``sqlite+aiosqlite:///``): reads run on a small
  thread pool; writes go through ONE writer thread (datasette's
  ``database.py``), which also commits queued writes together ("group
  commit"; when one of them fails, the batch is replayed one write per
  transaction so the failure never spoils the others). That is both what
  SQLite wants (one writer) and several times faster than a thread hop per
  statement. Consecutive queued calls of a write function that has a batch
  form (``batch_of``) run as ONE call of that form: the ingest path stores a
  run of messages with a few statements instead of a few per message.
- PostgreSQL (``postgresql+asyncpg://``): an async engine runs the same
  function with ``run_sync``; one transaction per write. A pooled connection
  is checked (a ping) only when it has been idle ``PING_AFTER_IDLE`` seconds
  or more, not on every checkout (``pool_pre_ping``): the pre-ping was a
  transaction of its own, three round trips before each of ours. A server
  that went away meanwhile fails the first statement instead; SQLAlchemy
  then drops every connection the pool held before, so it costs one failed
  call per instance, where the pre-ping would have failed too mid-restart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hub.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[..., T]
# A queued write: the function, its positional and keyword arguments, and
# the future of the coroutine awaiting it.
Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]
Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
BATCH_FORM = "__batch_form__"


def batch_of(single: Callable[..., Any]) -> Callable[[Callable[..., list[Any]]], Callable[..., list[Any]]]:
    """Register the decorated ``many(conn, [arg, ...], **kwargs)`` as the
    batch form of the write ``single(conn, arg, **kwargs)``: it must return,
    in order, what each call of ``single`` would have, had they run one
    after another in the same transaction.

    The SQLite writer uses it for consecutive queued calls with equal keyword
    arguments. Every caller still gets its own result, and when the batch
    fails, each call is replayed on its own."""

    def register(many: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        setattr(single, BATCH_FORM, many)
        return many

    return register


class Database(Protocol):
    url: str
    dialect: str

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a read transaction and return its result."""

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a write transaction, committed before this returns.

        ``fn`` may run more than once (PostgreSQL: again when a concurrent
        commit deleted a row it referenced, ``vanished_reference``), so it
        keeps its effects in the transaction and in what it returns."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def sync_url(url: str) -> str:
    """The URL for a synchronous engine (migrations, the SQLite writer)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    return url


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


class SQLiteDatabase:
    dialect = "sqlite"
    GROUP_COMMIT_MAX = 128

    def __init__(self, url: str, *, readers: int = 4) -> None:
        self.url = url
        path = sqlite_path(url)
        if path is None:
            raise ConfigError("SQLite needs a file path (an in-memory database has no second reader)")
        path.parent.mkdir(parents=True, exist_ok=True)
        enable_wal(path)
        self._write_engine = self._engine(sync_url(url), begin="BEGIN IMMEDIATE")
        self._read_engine = self._engine(sync_url(url), begin="BEGIN")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._closed = False

    @staticmethod
    def _engine(url: str, *, begin: str) -> sa.Engine:
        # hide_parameters: a failed statement's log line must not carry names, emails or texts.
        engine = sa.create_engine(url, pool_size=8, max_overflow=8, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy (not the sqlite3 module) decide when transactions
            # start, so SAVEPOINTs work (SQLAlchemy's pysqlite recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Straight to the driver: ``exec_driver_sql`` would cost an
            # execution context (~20 µs) on every transaction.
            driver: Any = conn.connection.driver_connection  # a checked-out connection always has one
            driver.execute(begin).close()

        return engine

    def _write_loop(self) -> None:
        conn = self._write_engine.connect()
        stopping = False
        try:
            while not stopping:
                job = self._queue.get()
                if job is None:
                    break
                batch = [job]
                while len(batch) < self.GROUP_COMMIT_MAX:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stopping = True
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: Connection, batch: list[Job]) -> None:
        """Run queued writes in ONE transaction (one commit for all of them).

        Optimistic: if any write raises, the whole transaction is rolled back
        and every write of the batch runs again in a transaction of its own,
        so one failing write never spoils the others (cheaper than a
        SAVEPOINT per write, and failures are rare)."""
        live = [job for job in batch if not job[3].cancelled()]
        if not live:
            return
        outcomes: list[Outcome] = []
        if len(live) > 1:
            try:
                with conn.begin():
                    for group in _groups(live):
                        outcomes.extend(_run_group(conn, group))
            except Exception:
                outcomes = []
        if not outcomes:
            for fn, args, kwargs, future in live:
                try:
                    with conn.begin():
                        result = fn(conn, *args, **kwargs)
                except BaseException as err:  # handed to the awaiting coroutine
                    outcomes.append((future, None, err))
                else:
                    outcomes.append((future, result, None))
        # One wake-up per event loop for the whole batch, not one per write:
        # each call_soon_threadsafe writes to the loop's self-pipe.
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, resolved in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, resolved)
            except RuntimeError:  # that loop is closed: nobody awaits these any more
                pass

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise RuntimeError("database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, args, kwargs, future))
        return await future

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn, args)

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._read_engine.connect() as conn, conn.begin():
            return fn(conn, *args)

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar_one())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._readers.shutdown(wait=True)
        self._write_engine.dispose()
        self._read_engine.dispose()


def enable_wal(path: Path) -> None:
    """WAL is a property of the file: switch once, before any pool connects
    (the switch itself is not retried by SQLite's busy handler)."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _groups(jobs: list[Job]) -> list[list[Job]]:
    """Split queued writes into runs that one call can serve: consecutive
    one-argument calls of the same function with a batch form and equal
    keyword arguments; any other write is a run of its own."""
    groups: list[list[Job]] = []
    for job in jobs:
        if groups and hasattr(job[0], BATCH_FORM) and len(job[1]) == 1:
            last = groups[-1][-1]
            if last[0] is job[0] and len(last[1]) == 1 and last[2] == job[2]:
                groups[-1].append(job)
                continue
        groups.append([job])
    return groups


def _run_group(conn: Connection, group: list[Job]) -> list[Outcome]:
    fn, _, kwargs, _ = group[0]
    if len(group) == 1:
        return [(group[0][3], fn(conn, *group[0][1], **kwargs), None)]
    results = getattr(fn, BATCH_FORM)(conn, [job[1][0] for job in group], **kwargs)
    if len(results) != len(group):
        raise RuntimeError(f"{fn.__qualname__}: batch form gave {len(results)} results for {len(group)} calls")
    return [(job[3], result, None) for job, result in zip(group, results)]


def _resolve_all(outcomes: list[Outcome]) -> None:
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


# A transaction that names a row a concurrent one deleted meanwhile (a
# contact merged away or erased while a message for them was being written:
# ``hub.conversations.contacts.hold_contact``) runs again and reads what that
# commit left; a reference that is wrong from the start fails every time.
WRITE_ATTEMPTS = 3


def vanished_reference(err: sa.exc.IntegrityError) -> bool:
    """A PostgreSQL foreign key violation (SQLSTATE 23503)."""
    cause = getattr(err.orig, "__cause__", None)
    return (getattr(cause, "sqlstate", None) or getattr(err.orig, "sqlstate", None)) == "23503"


# A pooled PostgreSQL connection idle this long is pinged before use.
PING_AFTER_IDLE = 2.0
_IDLE_SINCE = "servicehub_idle_since"


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, ping_after_idle: float = PING_AFTER_IDLE) -> None:
        self.url = url
        self._engine: AsyncEngine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True
        )
        self.pings = 0
        pool = self._engine.sync_engine.pool

        def checked_in(dbapi_connection: Any, record: Any) -> None:
            record.info[_IDLE_SINCE] = time.monotonic()

        def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            idle_since = record.info.get(_IDLE_SINCE)
            if idle_since is None or time.monotonic() - idle_since < ping_after_idle:
                return  # new, or in use a moment ago
            self.pings += 1
            try:
                dbapi_connection.ping()
            except Exception as err:
                # The pool retries the checkout with a new connection.
                raise sa.exc.DisconnectionError(f"idle connection is gone: {type(err).__name__}") from err

        sa.event.listen(pool, "checkin", checked_in)
        sa.event.listen(pool, "checkout", checked_out)

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        attempt = 1
        while True:
            try:
                async with self._engine.begin() as conn:
                    return await conn.run_sync(fn, *args, **kwargs)
            except sa.exc.IntegrityError as err:
                if attempt == WRITE_ATTEMPTS or not vanished_reference(err):
                    raise
                attempt += 1

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self._engine.dispose()


def open_database(url: str) -> Database:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SQLiteDatabase(url)
    if backend == "postgresql":
        if make_url(url).get_driver_name() != "asyncpg":
            raise ConfigError("PostgreSQL URLs must use the asyncpg driver: postgresql+asyncpg://...")
        return PostgresDatabase(url)
    raise ConfigError(f"unsupported database URL scheme {backend!r} (use sqlite or postgresql)")


class PerDialect:
    """A statement that differs by SQL dialect (``insert_ignore``), built once
    per dialect on first use instead of on every call."""

    def __init__(self, build: Callable[[Connection], Any]) -> None:
        self._build = build
        self._built: dict[str, Any] = {}

    def __call__(self, conn: Connection) -> Any:
        built = self._built.get(conn.dialect.name)
        if built is None:
            built = self._built[conn.dialect.name] = self._build(conn)
        return built


def insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
