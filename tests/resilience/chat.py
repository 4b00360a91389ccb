"""The resilience suite's web chat visitors (no tests here): the widget's
protocol (``channels/webchat``) spoken over a real socket to either
instance, with the widget's own reliability: the same ``client_id`` on
every retry, resumed with its token after a drop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.resilience.load import DUPLICATE_RATE, GIVE_UP_AFTER, PUBLIC_URL, Load, Script

ANSWERS = ("bot", "agent")  # authors of the answers a visitor waits for
REPLY_WAIT = 1.0  # how long a chat visitor waits for the bot's answer before writing again


class WebchatVisitor:
    """A widget: one socket, kept open on the instance the balancer chose
    (visitors alternate between instances), resumed with its token on the
    other instance when it drops; a message is sent until acked, with the
    same ``client_id`` every time. After its last message the socket stays
    open until every answer came, or until the hub has sent everything
    (``Load.settled``). An answer pushed while its socket's instance was
    being killed never reaches that socket: the durable conversation is the
    source of truth, and the widget's resume path (its token, after the
    newest id a history frame brought) brings it on the next connection
    (``reconnect``), counted apart from those shown live.
    """

    def __init__(self, script: Script, load: Load) -> None:
        self.script = script
        self.load = load
        self.token: str | None = None
        self.position = 0  # the next message to send
        self.live: set[int] = load.tally.webchat_live.setdefault(script.key, set())
        self.on_reconnect: set[int] = set()  # answers the open chat missed, brought by the resume after
        self.synced_id: int | None = None  # the newest id a history frame brought: where a resume starts
        # open: what arrives is shown live; reconnect: caught up on resume; closed: the final read
        self.phase = "open"
        self.final: set[int] = set()  # bot answers in the conversation when it was opened again at the end
        self.written = asyncio.Event()  # every message taken (or given up): the customer's writer moves on

    async def run(self) -> None:
        tally = self.load.tally
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP_AFTER * len(self.script.texts)
        attempt = 0
        try:
            while loop.time() < deadline:
                instance = (self.script.index + attempt) % len(self.load.urls)
                tally.attempts += 1
                try:
                    if await self._connected(self.load.urls[instance]):
                        return
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as err:
                    tally.errors[f"webchat {type(err).__name__}"] += 1
                tally.failed_attempts += 1
                attempt += 1
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * self.load.random.uniform(0.5, 1.0))
            tally.gave_up.extend(self.script.texts[self.position :])
        finally:
            self.written.set()

    async def _connected(self, base: str) -> bool:
        """One socket: resume, send what is left in order, wait for the answers. False: reconnect."""
        assert self.load.http is not None
        texts = self.script.texts
        url = base.replace("http://", "ws://") + "/channels/webchat/ws"
        async with self.load.http.ws_connect(url, headers={"Origin": PUBLIC_URL}, heartbeat=None) as ws:
            await ws.send_json({"type": "resume", "token": self.token} if self.token else {"type": "hello"})
            if await self._until(ws, lambda f: f["type"] == "history", 10.0) is None:
                return False
            while self.position < len(texts):
                client_id = f"{self.script.key}-{self.position}"
                frame = {"type": "message", "client_id": client_id, "text": texts[self.position]}
                await ws.send_json(frame)
                if self.load.random.random() < DUPLICATE_RATE:  # the widget lost the ack and sends again
                    self.load.tally.duplicates_sent += 1
                    await ws.send_json(frame)
                ack = await self._until(ws, lambda f, c=client_id: f["type"] == "ack" and f.get("client_id") == c, 10.0)
                if ack is None:
                    return False
                self.position += 1
                self.load.taken(self.script)
                # A person reads the answer before writing again (a while at most).
                await self._until(ws, lambda f: len(self.live) >= self.position, REPLY_WAIT)
            self.written.set()
            answers = self.expected
            while len(self.live) < answers and not self.load.settled.is_set():
                await self._until(ws, lambda f: len(self.live) >= answers, 0.5)
            return True

    @property
    def expected(self) -> int:
        """Answers the chat waits for: the bot's to each message, and an agent's to a handoff."""
        return len(self.script.texts) + self.script.handoff

    @property
    def missed(self) -> bool:
        return len(self.live) < self.expected

    async def reconnect(self, base: str) -> None:
        """The widget's resume path, once the hub has sent everything: a chat
        that missed answers opens again with its token, after the newest id
        a history frame brought, and shows what the history now holds."""
        assert self.load.http is not None and self.token is not None
        url = base.replace("http://", "ws://") + "/channels/webchat/ws"
        async with self.load.http.ws_connect(url, headers={"Origin": PUBLIC_URL}, heartbeat=None) as ws:
            frame: dict[str, Any] = {"type": "resume", "token": self.token}
            if self.synced_id is not None:
                frame["after_id"] = self.synced_id
            self.phase = "reconnect"
            await ws.send_json(frame)
            history = await self._until(ws, lambda f: f["type"] == "history", 10.0)
            assert history is not None, f"no history on {self.script.key}'s reconnect"
            self.phase = "open"

    async def check_history(self, base: str) -> None:
        """At the end: open the chat once more and read the whole conversation."""
        assert self.load.http is not None
        url = base.replace("http://", "ws://") + "/channels/webchat/ws"
        async with self.load.http.ws_connect(url, headers={"Origin": PUBLIC_URL}, heartbeat=None) as ws:
            await ws.send_json({"type": "resume", "token": self.token, "after_id": 0})
            self.phase = "closed"  # what this socket shows is not counted as shown while the chat was open
            history = await self._until(ws, lambda f: f["type"] == "history", 10.0)
            assert history is not None, f"no history for {self.script.key}"
            self.final.update(m["id"] for m in history["messages"] if m["author"] in ANSWERS)

    async def _until(
        self, ws: aiohttp.ClientWebSocketResponse, wanted: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """Read frames (noting the answers they bring) until one is ``wanted``; None after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                message = await ws.receive(timeout=left)
            except TimeoutError:
                return None
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed: {message.type.name} {message.data!r} {ws.close_code}")
            frame = message.json()
            if frame["type"] == "welcome":
                self.token = frame["token"]
            elif frame["type"] in ("history", "message"):
                # Live, or in the history a resumed socket gets: either way the open chat showed it.
                shown = frame["messages"] if frame["type"] == "history" else [frame["message"]]
                if frame["type"] == "history" and shown:
                    self.synced_id = max(self.synced_id or 0, *(int(m["id"]) for m in shown))
                answers = {m["id"] for m in shown if m["author"] in ANSWERS}
                if self.phase == "open":
                    self.live.update(answers)
                elif self.phase == "reconnect":
                    self.on_reconnect.update(answers - self.live)
            elif frame["type"] == "error":
                self.load.tally.errors[f"webchat {frame.get('code')}"] += 1
                self.load.tally.server_errors += frame.get("code") == "internal_error"
                if frame.get("code") in ("unavailable", "internal_error", "rate_limited"):
                    return None  # not taken: sent again on a new connection
                raise AssertionError(f"the hub refused a genuine frame: {frame}")
            if wanted(frame):
                return frame
        return None
