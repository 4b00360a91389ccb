"""Helpers shared by the web chat's protocol and browser tests (no tests here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.conftest import Hub, make_settings, start_hub

SECRET = "webchat-test-secret"
IDENTITY_SECRET = "host-site-identity-secret"


def webchat_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "channels": "webchat,fake",
        "webchat_secrets": SECRET,
        "webchat_identity_secret": IDENTITY_SECRET,
    }
    values.update(overrides)
    return make_settings(database_url, tmp_path, **values)


def add_echo_bot(hub: Hub) -> Any:
    """The echo bot on a hub that is already running (``install_echo_bot`` needs the app unstarted)."""
    from bot.echo import EchoBot
    from hub.events import MessageReceived

    bot = EchoBot(hub.service)
    hub.service.bus.subscribe(MessageReceived, bot.on_message)
    return bot


async def stop_hub(hub: Hub) -> None:
    # What app.on_shutdown does once hub/app.py wires Channel.on_shutdown:
    # without it aiohttp waits for open sockets until its shutdown timeout.
    channel = hub.channel("webchat")
    await channel.on_shutdown(hub.app)
    await hub.client.close()


@asynccontextmanager
async def running_hub(database_url: str, tmp_path: Path, *, echo: bool = True, **overrides: Any) -> AsyncIterator[Hub]:
    hub = await start_hub(webchat_settings(database_url, tmp_path, **overrides))
    if echo:
        add_echo_bot(hub)
    try:
        yield hub
    finally:
        await stop_hub(hub)


async def receive(ws: ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, msg
    return msg.json()


async def receive_until(ws: ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """Skip frames until one of ``kind`` arrives."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await receive(ws, max(0.01, deadline - asyncio.get_running_loop().time()))
        if frame["type"] == kind:
            return frame


async def hello(ws: ClientWebSocketResponse, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    await ws.send_json({"type": "resume" if fields.get("token") else "hello", **fields})
    welcome = await receive(ws)
    assert welcome["type"] == "welcome", welcome
    history = await receive_until(ws, "history")
    return welcome, history
