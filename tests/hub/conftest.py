"""Fixtures the hub's tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fakes.rasa import FakeRasa


@pytest_asyncio.fixture
async def rasa() -> AsyncIterator[FakeRasa]:
    """A Rasa stand-in on loopback (the real Rasa is tested in tests/bot)."""
    fake = FakeRasa()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
