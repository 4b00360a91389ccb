"""Fixtures shared by every test package.

Storage tests run over every URL in ``HUB_TEST_DATABASE_URLS`` (comma
separated; ``make test`` adds the machine's PostgreSQL when it answers). Each
test gets a fresh database: a new SQLite file, or a new PostgreSQL database
created from the URL given (its own database name is the maintenance one).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

FAKE_SECRET = "test-fake-secret"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_urls() -> list[str]:
    raw = os.environ.get("HUB_TEST_DATABASE_URLS", "sqlite")
    return [u.strip() for u in raw.split(",") if u.strip()]


def backend_id(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else make_url(url).get_backend_name()


async def _maintenance(base_url: str) -> Any:
    import asyncpg

    url = make_url(base_url)
    return await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )


# Migrating takes a few tenths of a second, and most tests want a fresh
# database: each test process migrates one template per backend, once, and
# each test gets a copy of it (an SQLite backup; a PostgreSQL CREATE DATABASE
# ... TEMPLATE). Migration tests call ``upgrade`` on their own databases.
_SQLITE_TEMPLATE: Path | None = None
_PG_TEMPLATES: dict[str, str] = {}


def _sqlite_template() -> Path:
    global _SQLITE_TEMPLATE
    if _SQLITE_TEMPLATE is None:
        import atexit
        import shutil
        import tempfile

        from hub.storage.migrate import upgrade

        folder = Path(tempfile.mkdtemp(prefix="hub-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        upgrade(f"sqlite+aiosqlite:///{folder / 'template.db'}")
        _SQLITE_TEMPLATE = folder / "template.db"
    return _SQLITE_TEMPLATE


def copy_sqlite_template(path: Path) -> str:
    """A migrated SQLite database at ``path``; returns its URL."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(_sqlite_template())
    target = sqlite3.connect(path)
    try:
        source.backup(target)  # the whole database, whatever journal mode it is in
    finally:
        target.close()
        source.close()
    return f"sqlite+aiosqlite:///{path}"


async def _pg_template(base_url: str) -> str:
    name = _PG_TEMPLATES.get(base_url)
    if name is None:
        import atexit

        from hub.storage.migrate import upgrade

        url, name = await _new_pg_database(base_url, "hub_template")
        await asyncio.to_thread(upgrade, url)
        atexit.register(lambda: asyncio.run(_drop_pg_database(base_url, name)))
        _PG_TEMPLATES[base_url] = name
    return name


async def _new_pg_database(base_url: str, prefix: str, template: str | None = None) -> tuple[str, str]:
    """A new database on ``base_url``'s server (a copy of ``template``): its URL and name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await _maintenance(base_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False), name


async def _create_pg_database(base_url: str) -> tuple[str, str]:
    return await _new_pg_database(base_url, "hub_test", await _pg_template(base_url))


async def _drop_pg_database(base_url: str, name: str) -> None:
    conn = await _maintenance(base_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(base: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new, migrated database for ``base`` (an entry of ``database_urls``), dropped afterwards."""
    if base == "sqlite":
        yield await asyncio.to_thread(copy_sqlite_template, tmp_path / "hub.db")
        return
    url, name = await _create_pg_database(base)
    try:
        yield url
    finally:
        await _drop_pg_database(base, name)


@pytest_asyncio.fixture(params=database_urls(), ids=backend_id)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield copy_sqlite_template(tmp_path / "hub.db")


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Any:
    from hub.config import Settings

    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp_path / "data",
        "channels": "fake",
        "fake_secret": FAKE_SECRET,
        "outbox_base_delay": 0.05,
        "outbox_max_delay": 0.2,
        "outbox_poll_interval": 0.05,
        "kb_enabled": False,
        "bot": "none",
        # A hub with the bot would train the urgency classifier (minutes of
        # CPU) in the background; tests/bot/test_urgency.py trains a small one.
        "bot_urgency_classifier": False,
        "webchat_agents_online": "true",
        # Hubs of one test process share a Redis prefix (two instances of a
        # test must meet); another process's (a parallel worker's) never do.
        "redis_prefix": f"servicehub-test-{os.getpid()}",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Hub:
    """A running hub on loopback with its test client and handy helpers."""

    app: web.Application
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def service(self) -> Any:
        from hub import keys

        return self.app[keys.SERVICE]

    @property
    def db(self) -> Any:
        from hub import keys

        return self.app[keys.DATABASE]

    @property
    def tickets(self) -> Any:
        from hub import keys

        return self.app[keys.TICKETS]

    def channel(self, name: str) -> Any:
        from hub import keys

        return self.app[keys.CHANNELS][name]

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def api(self, method: str, path: str, *, role: str = "admin", expect: int | None = 200, **kwargs: Any) -> Any:
        headers = {**self.auth(role), **kwargs.pop("headers", {})}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        body = await response.json() if response.content_type == "application/json" else await response.text()
        if expect is not None:
            assert response.status == expect, (response.status, body)
        return body

    async def inbound(self, payload: Any, *, secret: str = FAKE_SECRET, expect: int = 200) -> Any:
        from channels.fake import sign

        raw = json.dumps(payload).encode()
        response = await self.client.post(
            "/channels/fake/webhook", data=raw, headers={**sign(secret, raw), "Content-Type": "application/json"}
        )
        body = await response.json()
        assert response.status == expect, (response.status, body)
        return body


async def start_hub(
    settings: Any, *, channels: dict[str, Any] | None = None, server_port: int = 0, **app_kwargs: Any
) -> Hub:
    from hub import auth
    from hub.app import create_app
    from hub.storage import open_database

    db = open_database(settings.database_url)
    tokens = {}
    try:
        for role in ("admin", "agent", "viewer"):
            user = (
                await db.write(
                    lambda conn, r=role: auth.create_user(
                        conn, name=f"{r.title()} User", email=f"{r}@example.test", role=r
                    )
                )
                if not await _user_exists(db, f"{role}@example.test")
                else await db.read(auth.find_user, f"{role}@example.test")
            )
            tokens[role] = (await db.write(auth.create_token, user.id, "tests"))[0]
    finally:
        await db.close()
    app = create_app(settings, channels=channels, **app_kwargs)
    client = TestClient(TestServer(app, host="127.0.0.1", port=server_port))
    await client.start_server()
    return Hub(app=app, client=client, tokens=tokens)


SHUTDOWN_LIMIT = 60.0


async def close_hub(running: Hub, *, limit: float = SHUTDOWN_LIMIT) -> None:
    """Stop a test hub; a shutdown that does not finish within ``limit``
    fails the test with every pending task's stack instead of hanging the
    run (each cleanup context bounds its own waits, so this is a bug)."""
    closing = asyncio.ensure_future(running.client.close())
    done, _ = await asyncio.wait({closing}, timeout=limit)
    if closing in done:
        closing.result()
        return
    stacks = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        buffer = io.StringIO()
        task.print_stack(file=buffer)
        stacks.append(buffer.getvalue())
    closing.cancel()
    pytest.fail(f"hub shutdown did not finish in {limit:.0f} s; pending tasks:\n" + "\n".join(stacks), pytrace=False)


async def _user_exists(db: Any, email: str) -> bool:
    from hub import auth
    from hub.errors import NotFound

    try:
        await db.read(auth.find_user, email)
        return True
    except NotFound:
        return False


@pytest_asyncio.fixture
async def hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    running = await start_hub(make_settings(database_url, tmp_path))
    try:
        yield running
    finally:
        await close_hub(running)


@pytest_asyncio.fixture
async def sqlite_hub(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    running = await start_hub(make_settings(sqlite_url, tmp_path))
    try:
        yield running
    finally:
        await close_hub(running)


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


# The resilience suite's figures, a test property: printed at the end of the run.
RESILIENCE_FIGURES = "resilience_figures"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The resilience suite's counts at the end of every run (CI's included:
    a property travels from an xdist worker with its report; ``print`` does not)."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == RESILIENCE_FIGURES:
                    terminalreporter.write_sep("=", "resilience suite")
                    terminalreporter.write_line(f"{report.nodeid} ({report.outcome}): {value}")
