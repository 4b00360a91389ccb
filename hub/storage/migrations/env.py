"""Alembic environment: SQLite through a sync engine, PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from hub.storage import sync_url
from hub.storage.schema import metadata

# The advisory lock every migrating process takes on PostgreSQL ("servicehub" as an int64).
MIGRATION_LOCK = int.from_bytes(b"svchub-m", "big") >> 1
config = context.config
url = config.get_main_option("sqlalchemy.url")


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several instances start at once (`hub serve` upgrades first): one
            # migrates, the others wait here, then find the schema at head.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_online() -> None:
    if url.startswith("postgresql"):
        asyncio.run(_run_async())
        return
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
