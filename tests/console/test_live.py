"""The console's live feed: an inbound message reaches a connected stream
within a second, with ids and kinds and none of the customer's words;
a reconnect replays what it missed; shutdown ends every stream at once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession

from hub import keys
from hub.console import live
from tests.conftest import close_hub
from tests.console.conftest import ConsoleHub, StartConsoleHub
from tests.console.helpers import signed_in_cookies


class Stream:
    """Reads Server-Sent Events off a response: (event, id, data)."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, timeout: float = 5.0) -> tuple[str, str | None, Any]:
        event, ident, data = "message", None, list[str]()
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        return event, ident, json.loads("\n".join(data))
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "":
                    self.comments.append(value)
                elif field == "event":
                    event = value
                elif field == "id":
                    ident = value
                elif field == "data":
                    data.append(value)

    async def until(self, predicate: Any, timeout: float = 5.0) -> tuple[str, str | None, Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = await self.next(timeout)
                if predicate(*found):
                    return found


async def connect(console: ConsoleHub, session: ClientSession, **headers: str) -> Stream:
    response = await session.get("/console/events", headers=headers)
    assert response.status == 200 and response.content_type == "text/event-stream"
    stream = Stream(response)
    event, _, _ = await stream.next()
    assert event == "hello"
    return stream


async def session_for(console: ConsoleHub, role: str) -> ClientSession:
    session = ClientSession(base_url=console.base_url)
    session.cookie_jar.update_cookies(await signed_in_cookies(console.app, f"{role}@example.test"))
    return session


@pytest.mark.asyncio
async def test_an_inbound_message_reaches_a_connected_console(console_hub: ConsoleHub) -> None:
    hub = console_hub.hub
    async with await session_for(console_hub, "viewer") as viewer:
        stream = await connect(console_hub, viewer)
        sent = time.perf_counter()
        await hub.inbound({"from": "ada@example.com", "name": "Ada Lovelace", "text": "my walnut clock", "id": "l1"})
        # Functional bound only: the latency itself is bench/console.py's (event to screen, p99).
        event, ident, data = await stream.until(lambda e, i, d: d.get("what") == "message", timeout=10.0)
        assert time.perf_counter() - sent < 10.0
        assert event == "change" and ident is not None
        assert data["direction"] == "inbound" and data["new"] is True and data["conversation_id"] > 0
        raw = json.dumps(data)
        assert "walnut" not in raw and "Ada" not in raw and "ada@" not in raw
        # An agent's claim is a conversation change naming fields, not values.
        cid = data["conversation_id"]
        await hub.api("POST", f"/api/v1/conversations/{cid}/handoff", role="agent", json={}, expect=None)
        await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"priority": "urgent"})
        _, _, change = await stream.until(lambda e, i, d: d.get("what") == "conversation" and "priority" in d["fields"])
        assert change == {"conversation_id": cid, "what": "conversation", "fields": ["priority"]}

        # A reader that reconnects with its last id gets what it missed, in order.
        await stream.response.release()
        stream.response.close()
        await hub.inbound({"from": "ada@example.com", "text": "still there?", "id": "l2"})
        await hub.inbound({"from": "bob@example.com", "text": "hello", "id": "l3"})
        assert ident is not None
        again = await connect(console_hub, viewer, **{"Last-Event-ID": ident})
        replayed = [await again.next()]
        while not (replayed[-1][2].get("what") == "message" and replayed[-1][2].get("new")):
            replayed.append(await again.next())
        assert all(e == "change" for e, _, _ in replayed)  # not a resync: the feed still had them
        seqs = [int(str(i).split(".")[1]) for _, i, _ in replayed]
        assert seqs == sorted(seqs) and seqs[0] > int(ident.split(".")[1])
        assert [d.get("direction") for _, _, d in replayed if d.get("what") == "message"] == ["inbound", "inbound"]
        # One from another instance (or before a restart) cannot be replayed: re-read.
        foreign = await connect(console_hub, viewer, **{"Last-Event-ID": "deadbeef.12"})
        event, _, _ = await foreign.next()
        assert event == "resync"


@pytest.mark.asyncio
async def test_heartbeat_and_shutdown_end_streams_at_once(
    start_console_hub: StartConsoleHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    console = await start_console_hub()
    session = await session_for(console, "agent")
    try:
        stream = await connect(console, session)
        await asyncio.sleep(0.5)
        reading = asyncio.ensure_future(stream.next(timeout=10))
        await asyncio.sleep(0.3)
        assert stream.comments and stream.comments[0].startswith("ping")
        assert console.app[keys.CONSOLE_LIVE].readers
        started = time.perf_counter()
        await close_hub(console.hub, limit=10)
        assert time.perf_counter() - started < 5
        with pytest.raises((EOFError, Exception)):
            await reading
    finally:
        await session.close()


def test_a_reader_too_far_behind_is_told_to_resync() -> None:
    from hub.bus import LocalBus

    feed = live.LiveFeed(LocalBus(), history=10, backlog=3)
    reader = feed.connect(None)
    for n in range(5):
        feed.publish({"conversation_id": n, "what": "message"})
    # The fourth found three queued: they were dropped for a resync; the fifth follows it.
    assert reader.get_nowait() is live.RESYNC
    assert reader.get_nowait().seq == 5 and reader.empty()
    feed.disconnect(reader)
    # Within the history a reconnect replays; before it, resync.
    assert [s.seq for s in feed._since(f"{feed.instance}.3")] == [4, 5]
    for n in range(20):
        feed.publish({"conversation_id": n, "what": "message"})
    assert feed._since(f"{feed.instance}.3") == [live.RESYNC]
    assert feed._since(feed.last_id) == []
    assert feed._since("not-an-id") == [live.RESYNC]


@pytest.mark.asyncio
async def test_a_message_on_another_instance_reaches_this_ones_stream_through_redis(
    start_console_hub: StartConsoleHub,
) -> None:
    import os
    import uuid

    import redis.asyncio as redis

    url = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.from_url(url)
    try:
        await asyncio.wait_for(client.ping(), 2)
    except Exception:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {url}")
        pytest.skip("Redis is not reachable")
    finally:
        await client.aclose()
    # Two instances on one database and one Redis prefix of their own (HUB_REDIS_PREFIX).
    prefix = f"servicehub-test-{uuid.uuid4().hex}"
    first = await start_console_hub(redis_url=url, redis_prefix=prefix)
    second = await start_console_hub(redis_url=url, redis_prefix=prefix)
    async with await session_for(second, "agent") as agent:
        stream = await connect(second, agent)
        sent = time.perf_counter()
        received = await first.hub.inbound({"from": "ada@example.com", "text": "hello from one", "id": "r1"})
        message_id = received["received"][0]["message_id"]
        _, _, data = await stream.until(lambda e, i, d: d.get("message_id") == message_id, timeout=10.0)
        assert time.perf_counter() - sent < 10.0 and data["direction"] == "inbound"
