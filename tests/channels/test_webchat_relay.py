"""The web chat across hub instances: two hubs on one database and one real Redis, each on its own loopback port.

A visitor's socket is held by one instance (B); replies, typing and the
visitor's other tabs are produced on the other (A). The relay
(``hub/relay.py``) carries live pushes; the timeline carries what a lost
pub/sub message dropped, read again on reconnect (and pushed as a history
when the relay's subscription comes back).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp import ClientWebSocketResponse

from hub import keys
from tests.channels.test_webchat_support import hello, receive, receive_until, stop_hub, webchat_settings
from tests.conftest import Hub, start_hub, wait_for
from tests.fakes.tcp_proxy import TcpProxy
from tests.hub.test_bus import REDIS_URL, _redis_available

WS = "/channels/webchat/ws"


async def _need_redis() -> None:
    if not await _redis_available():
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}")
        pytest.skip(f"no Redis at {REDIS_URL}")


def _through(proxy: TcpProxy) -> str:
    """REDIS_URL with the proxy's address."""
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))


@asynccontextmanager
async def two_hubs(
    database_url: str, tmp_path: Path, *, b_redis: str | None = None, **b_settings: Any
) -> AsyncIterator[tuple[Hub, Hub]]:
    """Hubs A and B on one database and Redis (their own channel names, so
    parallel runs never meet); B's outbox worker is stopped, so every
    reply goes out through A's."""
    await _need_redis()
    prefix = f"servicehub-test-{uuid.uuid4().hex[:12]}"
    a = await start_hub(webchat_settings(database_url, tmp_path / "a", redis_url=REDIS_URL, redis_prefix=prefix))
    try:
        b = await start_hub(
            webchat_settings(
                database_url, tmp_path / "b", redis_url=b_redis or REDIS_URL, redis_prefix=prefix, **b_settings
            )
        )
        try:
            await b.app[keys.OUTBOX].stop()
            yield a, b
        finally:
            await stop_hub(b)
    finally:
        await stop_hub(a)


@dataclass
class Widget:
    """What ``static/widget.js`` does with the frames it gets: shows a
    message id once, and resumes from the newest id a history brought."""

    shown: list[int] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    synced_id: int | None = None
    live: dict[int, int] = field(default_factory=dict)  # id -> live ``message`` frames received

    def take(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "history":
            for message in frame["messages"]:
                self._show(message)
                if self.synced_id is None or message["id"] > self.synced_id:
                    self.synced_id = message["id"]
            if self.synced_id is None and not frame["messages"]:
                self.synced_id = 0  # nothing yet: everything to come is after id 0
        elif frame["type"] == "message":
            self.live[frame["message"]["id"]] = self.live.get(frame["message"]["id"], 0) + 1
            self._show(frame["message"])
        elif frame["type"] == "ack":
            self._show(frame["message"])

    def _show(self, message: dict[str, Any]) -> None:
        if message["id"] not in self.texts:
            self.shown.append(message["id"])
            self.texts[message["id"]] = message["text"]

    @property
    def transcript(self) -> list[str]:
        return [self.texts[i] for i in sorted(self.shown)]


async def read_until(ws: ClientWebSocketResponse, widget: Widget, text: str, timeout: float = 10.0) -> None:
    """Frames into ``widget`` until it shows a message with ``text``."""
    while text not in widget.texts.values():
        widget.take(await receive(ws, timeout))


async def visitor_on(hub: Hub, widget: Widget, **fields: Any) -> tuple[ClientWebSocketResponse, dict[str, Any]]:
    ws = await hub.client.ws_connect(WS)
    if widget.synced_id is not None:
        fields["after_id"] = widget.synced_id
    welcome, history = await hello(ws, **fields)
    widget.take(history)
    return ws, welcome


async def say(ws: ClientWebSocketResponse, widget: Widget, text: str) -> int:
    """The visitor sends ``text``; its message id."""
    await ws.send_json({"type": "message", "client_id": uuid.uuid4().hex, "text": text})
    ack = await receive_until(ws, "ack")
    widget.take(ack)
    return int(ack["message"]["id"])


async def conversation_of(hub: Hub, welcome: dict[str, Any]) -> int:
    conversation = await hub.service.conversation_for("webchat", welcome["visitor_id"])
    assert conversation is not None
    return int(conversation.id)


async def reply(hub: Hub, conversation_id: int, text: str) -> int:
    """An agent's reply through ``hub``'s API; its message id."""
    path = f"/api/v1/conversations/{conversation_id}/messages"
    body = await hub.api("POST", path, role="agent", json={"text": text}, expect=201)
    return int(body["id"])


async def delivery_status(hub: Hub, message_id: int) -> str:
    return str((await hub.api("GET", f"/api/v1/messages/{message_id}"))["delivery_status"])


def status_is(hub: Hub, message_id: int, wanted: str) -> Any:
    async def check() -> bool:
        return await delivery_status(hub, message_id) == wanted

    return check


@pytest.mark.asyncio
async def test_a_reply_sent_by_another_instance_reaches_the_socket_once(database_url: str, tmp_path: Path) -> None:
    async with two_hubs(database_url, tmp_path) as (a, b):
        widget = Widget()
        ws, welcome = await visitor_on(b, widget)
        await say(ws, widget, "Where is my parcel?")
        conversation_id = await conversation_of(b, welcome)

        # The agent answers through A's API; A's outbox worker sends it; B holds the socket.
        first = await reply(a, conversation_id, "It left the warehouse today.")
        await read_until(ws, widget, "It left the warehouse today.")
        # B acknowledged it: delivered (so no e-mailed copy for a visitor who is here).
        await wait_for(status_is(a, first, "delivered"))
        second = await reply(a, conversation_id, "Anything else?")
        await read_until(ws, widget, "Anything else?")
        # Once each on the socket itself (a repeat of the first would have come before the second).
        assert widget.live == {first: 1, second: 1}
        assert widget.transcript == ["Where is my parcel?", "It left the warehouse today.", "Anything else?"]
        await wait_for(status_is(a, second, "delivered"))
        await ws.close()

        # Nobody holds a socket anywhere: sent, not delivered; the history has it.
        third = await reply(a, conversation_id, "We are here if you need us.")
        await wait_for(status_is(a, third, "sent"))
        back, _ = await visitor_on(a, widget, token=welcome["token"])
        assert widget.transcript[-1] == "We are here if you need us."
        assert sorted(widget.shown) == widget.shown and len(set(widget.shown)) == len(widget.shown)
        await back.close()


@pytest.mark.asyncio
async def test_typing_from_one_instance_shows_on_the_other(database_url: str, tmp_path: Path) -> None:
    async with two_hubs(database_url, tmp_path) as (a, b):
        widget = Widget()
        ws, welcome = await visitor_on(b, widget)
        await say(ws, widget, "Hello?")
        conversation_id = await conversation_of(b, welcome)

        assert await a.service.show_typing(conversation_id, True)
        typing = await receive_until(ws, "typing")
        assert typing == {"type": "typing", "author": "agent", "active": True}
        assert await a.service.show_typing(conversation_id, False)
        # The stop comes next: the start was shown once, not once per instance.
        assert await receive(ws) == {"type": "typing", "author": "agent", "active": False}
        await ws.close()


@pytest.mark.asyncio
async def test_the_visitors_other_tab_on_another_instance_sees_their_message(database_url: str, tmp_path: Path) -> None:
    async with two_hubs(database_url, tmp_path) as (a, b):
        here, there = Widget(), Widget()
        tab_b, welcome = await visitor_on(b, here)
        await say(tab_b, here, "First words")
        tab_a, _ = await visitor_on(a, there, token=welcome["token"])
        assert there.transcript == ["First words"]

        sent = await say(tab_b, here, "Second words")
        frame = await receive_until(tab_a, "message")
        assert frame["message"]["id"] == sent and frame["message"]["author"] == "customer"
        # And the read receipt from A's tab reaches B's.
        await tab_a.send_json({"type": "read", "last_id": sent})
        assert await receive_until(tab_b, "read") == {"type": "read", "last_id": sent}
        await tab_a.close()
        await tab_b.close()


@pytest.mark.asyncio
async def test_a_reply_lost_on_pubsub_arrives_from_the_history_once(database_url: str, tmp_path: Path) -> None:
    """B is cut off from Redis (its subscription drops): the reply A sends
    meanwhile is lost on pub/sub. When B subscribes again, its open socket
    gets the history it missed; a reconnect resumes from the widget's
    resume point; nothing is shown twice."""
    redis_address = urlsplit(REDIS_URL)
    proxy = await TcpProxy(redis_address.hostname or "127.0.0.1", redis_address.port or 6379).start()
    try:
        async with two_hubs(database_url, tmp_path, b_redis=_through(proxy)) as (a, b):
            widget = Widget()
            ws, welcome = await visitor_on(b, widget)
            await say(ws, widget, "My order is late")
            conversation_id = await conversation_of(b, welcome)
            before = await reply(a, conversation_id, "Let me check.")
            await read_until(ws, widget, "Let me check.")
            relay = b.channel("webchat").relay
            gaps = relay.gaps

            proxy.cut()
            lost = await reply(a, conversation_id, "It ships tomorrow.")
            # Nobody acknowledged it: only sent (the history carries it).
            await wait_for(status_is(a, lost, "sent"))
            assert "It ships tomorrow." not in widget.texts.values()

            proxy.restore()
            # B subscribes again and sends the open socket what it missed.
            await read_until(ws, widget, "It ships tomorrow.", timeout=20)
            assert relay.gaps > gaps
            after = await reply(a, conversation_id, "Sorry for the wait.")
            await read_until(ws, widget, "Sorry for the wait.")
            assert widget.live.get(lost) is None  # it came in a history, not live
            assert widget.live[before] == 1 and widget.live[after] == 1
            await ws.close()

            # A reconnect (to A this time) resumes from the last history: nothing new, nothing twice.
            shown = list(widget.shown)
            again, _ = await visitor_on(a, widget, token=welcome["token"])
            assert widget.shown == shown
            assert widget.transcript == [
                "My order is late",
                "Let me check.",
                "It ships tomorrow.",
                "Sorry for the wait.",
            ]
            await again.close()
    finally:
        await proxy.close()


async def readiness(hub: Hub) -> dict[str, Any]:
    async with hub.client.get("/readyz") as response:
        assert response.status == 200  # degraded is still ready: the database answers
        return dict(await response.json())


@pytest.mark.asyncio
async def test_an_instance_starting_while_redis_is_away_starts_and_joins_when_it_is_back(
    database_url: str, tmp_path: Path
) -> None:
    """Redis restarting as an instance starts (a crashed instance coming
    back in the same minute) must not stop it: B starts without Redis,
    /readyz says degraded, chats work on B; when Redis answers, B subscribes,
    its open socket gets what A sent meanwhile, and live pushes flow again."""
    redis_address = urlsplit(REDIS_URL)
    proxy = await TcpProxy(redis_address.hostname or "127.0.0.1", redis_address.port or 6379).start()
    proxy.cut()
    try:
        async with two_hubs(database_url, tmp_path, b_redis=_through(proxy), redis_startup_wait=0.2) as (a, b):
            ready = await readiness(b)
            assert ready["status"] == "degraded"
            assert {"redis", "redis_relay_webchat"} <= set(ready["degraded"])
            widget = Widget()
            ws, welcome = await visitor_on(b, widget)
            await say(ws, widget, "Is anyone there?")
            conversation_id = await conversation_of(b, welcome)
            missed = await reply(a, conversation_id, "Yes, one moment.")
            await wait_for(status_is(a, missed, "sent"))

            proxy.restore()
            await read_until(ws, widget, "Yes, one moment.", timeout=20)  # the first subscription resyncs
            assert widget.live.get(missed) is None
            await wait_for(lambda: _ready_now(b))
            live = await reply(a, conversation_id, "Here is your answer.")
            await read_until(ws, widget, "Here is your answer.")
            assert widget.live[live] == 1
            await ws.close()
    finally:
        await proxy.close()


async def _ready_now(hub: Hub) -> bool:
    return (await readiness(hub))["status"] == "ready"


@pytest.mark.asyncio
async def test_a_visitor_who_dropped_during_the_outage_gets_the_lost_reply_on_reconnect(
    database_url: str, tmp_path: Path
) -> None:
    redis_address = urlsplit(REDIS_URL)
    proxy = await TcpProxy(redis_address.hostname or "127.0.0.1", redis_address.port or 6379).start()
    try:
        async with two_hubs(database_url, tmp_path, b_redis=_through(proxy)) as (a, b):
            widget = Widget()
            ws, welcome = await visitor_on(b, widget)
            await say(ws, widget, "Can I change my address?")
            conversation_id = await conversation_of(b, welcome)
            answered = await reply(a, conversation_id, "Which one?")
            await read_until(ws, widget, "Which one?")

            proxy.cut()
            await ws.close()  # the visitor's network went too
            lost = await reply(a, conversation_id, "Yes, until it ships.")
            await wait_for(status_is(a, lost, "sent"))
            proxy.restore()
            # Back, on A: the reconnect's history brings the lost reply (and
            # the live one again, which the widget drops); then live again.
            ws, _ = await visitor_on(a, widget, token=welcome["token"])
            assert lost in widget.shown and widget.live.get(lost) is None
            later = await reply(a, conversation_id, "Anything else?")
            await read_until(ws, widget, "Anything else?")
            assert widget.live == {answered: 1, later: 1}
            assert widget.transcript == [
                "Can I change my address?",
                "Which one?",
                "Yes, until it ships.",
                "Anything else?",
            ]
            await ws.close()
    finally:
        await proxy.close()


@pytest.mark.asyncio
async def test_one_instance_has_no_relay(database_url: str, tmp_path: Path) -> None:
    hub = await start_hub(webchat_settings(database_url, tmp_path))
    try:
        assert hub.channel("webchat").relay is None
    finally:
        await stop_hub(hub)
