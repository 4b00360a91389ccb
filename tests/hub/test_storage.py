"""The storage layer itself, over every URL in HUB_TEST_DATABASE_URLS."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.storage import open_database
from hub.storage.migrate import current_revision
from hub.storage.schema import contacts
from tests.conftest import database_urls


def _add_contact(conn: sa.Connection, name: str) -> int:
    from hub.conversations.contacts import create_contact

    return create_contact(conn, name=name)


def _fail(conn: sa.Connection, name: str) -> None:
    _add_contact(conn, name)
    raise RuntimeError("this write fails after inserting")


def _names(conn: sa.Connection) -> list[str]:
    return sorted(conn.execute(sa.select(contacts.c.name)).scalars())


@pytest.mark.asyncio
async def test_concurrent_writes_commit_independently(database_url: str) -> None:
    """Group commit (SQLite) or one transaction per write (PostgreSQL): a
    failing write rolls back alone, concurrent ones all land."""
    db = open_database(database_url)
    try:
        jobs = [db.write(_add_contact, f"c{i}") for i in range(50)]
        jobs.insert(25, db.write(_fail, "doomed"))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and "fails after inserting" in str(errors[0])
        names = await db.read(_names)
        assert "doomed" not in names and len(names) == 50
        ids = [r for r in results if isinstance(r, int)]
        assert len(set(ids)) == 50
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_migrations_are_at_head(database_url: str) -> None:
    from alembic.script import ScriptDirectory

    from hub.storage.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert await asyncio.to_thread(current_revision, database_url) == head


def test_unsupported_urls_are_refused() -> None:
    from hub.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported"):
        open_database("mysql://root@localhost/test")
    with pytest.raises(ConfigError, match="asyncpg"):
        open_database("postgresql://postgres@localhost/test")


@pytest.mark.asyncio
async def test_instances_starting_together_migrate_once() -> None:
    """Two `hub db upgrade` at once on an empty PostgreSQL database (two
    instances starting together): one migrates, the other waits on the
    advisory lock and finds the schema at head; neither fails."""
    from tests.conftest import _create_pg_database, _drop_pg_database

    bases = [u for u in database_urls() if u.startswith("postgresql")]
    if not bases:
        pytest.skip("PostgreSQL is not in HUB_TEST_DATABASE_URLS")
    url, name = await _create_pg_database(bases[0])
    try:
        hub = Path(sys.executable).with_name("hub")
        env = {**os.environ, "HUB_DATABASE_URL": url}
        procs = [
            await asyncio.create_subprocess_exec(
                str(hub), "db", "upgrade", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            for _ in range(2)
        ]
        outputs = [(await proc.communicate())[0].decode() for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        await test_migrations_are_at_head(url)
    finally:
        await _drop_pg_database(bases[0], name)


def _backend_pid(conn: sa.Connection) -> int:
    return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


async def _terminate(url: str, pid: int) -> None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


def _postgres_url() -> str:
    urls = [u for u in database_urls() if u.startswith("postgresql")]
    if not urls:
        pytest.skip("PostgreSQL is not in HUB_TEST_DATABASE_URLS")
    return urls[0]


@pytest.mark.asyncio
async def test_an_idle_postgres_connection_that_died_is_replaced_before_use() -> None:
    """A pooled connection idle for ``ping_after_idle`` is pinged at checkout;
    one the server dropped meanwhile is replaced, and the call never sees it."""
    from hub.storage import PostgresDatabase

    url = _postgres_url()
    db = PostgresDatabase(url, pool_size=1, ping_after_idle=0.0)
    try:
        first = await db.read(_backend_pid)
        await _terminate(url, first)
        second = await db.read(_backend_pid)
        assert second != first
        assert db.pings >= 1
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_a_busy_postgres_connection_is_not_pinged_and_a_dropped_one_fails_once() -> None:
    """No ping for a connection used a moment ago (the pre-ping cost a
    transaction per call); if the server dropped it, that one call fails and
    the pool is renewed, so the next call works."""
    from hub.storage import PostgresDatabase

    url = _postgres_url()
    db = PostgresDatabase(url, pool_size=1, ping_after_idle=3600.0)
    try:
        first = await db.read(_backend_pid)
        assert await db.read(_backend_pid) == first  # reused, unpinged
        assert db.pings == 0
        await _terminate(url, first)
        with pytest.raises(sa.exc.DBAPIError) as failed:
            await db.read(_backend_pid)
        assert failed.value.connection_invalidated
        assert await db.read(_backend_pid) != first
    finally:
        await db.close()
