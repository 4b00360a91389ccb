"""Alembic, driven from code: ``hub db upgrade`` and the test fixtures call this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from hub.storage import sqlite_path, sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # "%" is Alembic's interpolation character; URLs may carry %-escapes.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    path = sqlite_path(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext

    if database_url.startswith("postgresql"):
        import asyncio

        from sqlalchemy.ext.asyncio import create_async_engine

        async def _read() -> str | None:
            engine = create_async_engine(database_url)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
            finally:
                await engine.dispose()

        return asyncio.run(_read())
    engine = sa.create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
