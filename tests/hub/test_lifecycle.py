"""Start-up and shutdown: no leaked file descriptors or tasks (datasette's test_fd_leak)."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import pytest

from hub.config import Settings
from hub.errors import ConfigError
from tests.conftest import make_settings, start_hub


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settled_fds(limit: int, seconds: float = 3.0) -> int:
    """The process's descriptor count once it is back to ``limit`` or below, or
    after ``seconds``: other tests' finalisers and session-wide helpers open and
    close descriptors of their own at any moment, but a leak stays."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        gc.collect()
        count = _open_fds()
        if count <= limit or loop.time() >= deadline:
            return count
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_server_leaks_no_fds_or_tasks(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path)

    async def cycle() -> None:
        hub = await start_hub(settings)
        await hub.inbound({"from": "leak-check", "text": "hi"})
        await hub.client.close()

    await cycle()  # warm up imports and caches
    fds, tasks = _open_fds(), len(asyncio.all_tasks())
    for _ in range(3):
        await cycle()
    await asyncio.sleep(0.05)
    assert await _settled_fds(fds) <= fds
    assert len(asyncio.all_tasks()) <= tasks


def test_unknown_or_duplicate_channels_fail_at_start_up(tmp_path: Path) -> None:
    from channels.registry import build_channels

    with pytest.raises(ConfigError, match="unknown channel 'carrier-pigeon'"):
        build_channels(Settings(channels="fake,carrier-pigeon", fake_secret="x", _env_file=None))
    with pytest.raises(ConfigError, match="listed twice"):
        build_channels(Settings(channels="fake,fake", fake_secret="x", _env_file=None))
    with pytest.raises(ConfigError, match="HUB_FAKE_SECRET"):
        build_channels(Settings(channels="fake", _env_file=None))
