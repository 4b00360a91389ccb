"""A hub with the console on a real loopback port, and people who can sign in.

``console_hub`` starts one with the default settings; ``start_console_hub``
takes settings overrides (``require_mfa=True``, an https ``public_url``...).
Each hub reads the time from an ``OffsetClock`` (``hub.clock.advance(s)``).
The admin, agent and viewer of ``tests.conftest.start_hub``
(``{role}@example.test``) get the passwords in ``PASSWORDS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web

from hub import auth, keys
from hub.console import passwords
from hub.events import Clock, utcnow
from tests.conftest import Hub, close_hub, make_settings, start_hub

PASSWORDS = {
    "admin": "admin-correct-horse-1",
    "agent": "agent-battery-staple-2",
    "viewer": "viewer-tr0ub4dor-3",
}
# Hashing costs ~0.3 s a password: once per test process, not per test.
_HASHES: dict[str, str] = {}


def email_of(role: str) -> str:
    return f"{role}@example.test"


class OffsetClock(Clock):
    """The real time, moved forward by ``advance`` (sessions expire, TOTP steps pass)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class ConsoleHub:
    hub: Hub
    passwords: dict[str, str]
    clock: OffsetClock

    @property
    def app(self) -> web.Application:
        return self.hub.app

    @property
    def client(self) -> Any:
        return self.hub.client

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.hub.client.server.port}"

    @property
    def db(self) -> Any:
        return self.hub.db


async def set_passwords(app: web.Application) -> None:
    db = app[keys.DATABASE]
    now = app[keys.CLOCK].now()
    for role, password in PASSWORDS.items():
        if role not in _HASHES:
            _HASHES[role] = await passwords.hash_password(password)
        user = await db.read(auth.find_user, email_of(role))
        await db.write(passwords.set_password_hash, user.id, _HASHES[role], now=now)


StartConsoleHub = Callable[..., Awaitable[ConsoleHub]]


@pytest_asyncio.fixture
async def start_console_hub(database_url: str, tmp_path: Path) -> AsyncIterator[StartConsoleHub]:
    """``await start_console_hub(**settings_overrides)``: a running hub, closed after the test."""
    async with AsyncExitStack() as stack:
        count = 0

        async def start(**overrides: Any) -> ConsoleHub:
            nonlocal count
            count += 1
            data = tmp_path / f"hub{count}"
            data.mkdir(exist_ok=True)
            clock = OffsetClock()
            running = await start_hub(make_settings(database_url, data, **overrides), clock=clock)
            stack.push_async_callback(close_hub, running)
            await set_passwords(running.app)
            return ConsoleHub(running, dict(PASSWORDS), clock)

        yield start


@pytest_asyncio.fixture
async def console_hub(start_console_hub: StartConsoleHub) -> ConsoleHub:
    return await start_console_hub()
