"""Start-up and shutdown: no leaked file descriptors or tasks (datasette's test_fd_leak).

A hub with the fake channel and the web chat (knowledge base off) is started,
driven through webhooks, API requests and web chat sockets (one of them left
open for shutdown to close), and stopped, several times: the process must be
back to the descriptors and tasks it had after one warm-up cycle.
"""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import pytest

from hub.config import Settings
from hub.errors import ConfigError
from tests.channels.test_webchat_support import IDENTITY_SECRET, SECRET, hello, receive_until
from tests.conftest import make_settings, start_hub

# Descriptors the process may legitimately hold on to after a cycle (a lazily
# opened /dev/urandom, a thread pool's wakeup pipe grown once): a leak per
# cycle exceeds it after three cycles.
FD_TOLERANCE = 2


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
@pytest.mark.parametrize("with_redis", [False, True], ids=["local", "redis"])
async def test_server_leaks_no_fds_or_tasks(sqlite_url: str, tmp_path: Path, with_redis: bool) -> None:
    redis: dict[str, str] = {}
    if with_redis:  # the Redis bus and the web chat's relay (hub/relay.py) too
        from tests.hub.test_bus import REDIS_URL, _redis_available

        if not await _redis_available():
            if os.environ.get("CI"):
                pytest.fail(f"Redis is not reachable at {REDIS_URL}")
            pytest.skip(f"no Redis at {REDIS_URL}")
        redis = {"redis_url": REDIS_URL, "redis_prefix": f"servicehub-test-leak-{os.getpid()}"}
    settings = make_settings(
        sqlite_url,
        tmp_path,
        channels="webchat,fake",
        webchat_secrets=SECRET,
        webchat_identity_secret=IDENTITY_SECRET,
        **redis,
    )

    async def cycle(round_: int) -> None:
        hub = await start_hub(settings)
        try:
            await hub.inbound({"from": f"leak-check-{round_}", "text": "hi"})
            await hub.api("GET", "/api/v1/conversations")
            await hub.api("GET", "/api/v1/me", role="agent")
            health = await hub.client.get("/healthz")
            assert health.status == 200
            await health.release()
            chat = await hub.client.ws_connect("/channels/webchat/ws")
            await hello(chat)
            await chat.send_json({"type": "message", "client_id": f"c{round_}", "text": "Where is my order?"})
            await receive_until(chat, "ack")
            await chat.close()
            # Left open: shutdown must close it.
            await hello(await hub.client.ws_connect("/channels/webchat/ws"))
        finally:
            await hub.client.close()

    await cycle(0)  # warm up imports, caches and pools that live for the process
    await asyncio.sleep(0.05)
    gc.collect()
    fds, tasks = _open_fds(), asyncio.all_tasks()
    for round_ in range(1, 4):
        await cycle(round_)
    await asyncio.sleep(0.05)
    assert await _settled_fds(fds + FD_TOLERANCE) <= fds + FD_TOLERANCE
    leaked = [task for task in asyncio.all_tasks() - tasks if not task.done()]
    assert leaked == [], leaked


def test_unknown_or_duplicate_channels_fail_at_start_up(tmp_path: Path) -> None:
    from channels.registry import build_channels

    with pytest.raises(ConfigError, match="unknown channel 'carrier-pigeon'"):
        build_channels(Settings(channels="fake,carrier-pigeon", fake_secret="x", _env_file=None))
    with pytest.raises(ConfigError, match="listed twice"):
        build_channels(Settings(channels="fake,fake", fake_secret="x", _env_file=None))
    with pytest.raises(ConfigError, match="HUB_FAKE_SECRET"):
        build_channels(Settings(channels="fake", _env_file=None))
