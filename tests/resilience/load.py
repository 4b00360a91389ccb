"""The resilience suite's load (no tests here): customers writing in over
the fake channel, SMS (Twilio's signed webhooks) and web chat sockets,
through two hub instances alternately, as a balancer would send them.

Each customer is one scripted conversation: its messages go one after the
other (the next once the hub has taken the previous), so their order is
known. Every delivery is retried, on the other instance, until one answers
2xx (a provider retrying after a timeout or a dropped connection), and some
are delivered twice on purpose (once more after the success, or to both
instances at once), so that "no duplicates" means something. Nothing here
reads the hub's memory: what it stored is checked in the database after.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from channels.fake import sign as sign_fake
from tests.fakes.twilio_api import inbound_params, sign_twilio

PUBLIC_URL = "http://hub.resilience.test"  # the balancer's address: Twilio signs URLs under it
FAKE_SECRET = "resilience-fake-secret"
SMS_PATH = "/channels/sms/twilio"
CHANNELS = ("fake", "fake", "sms", "webchat")  # the mix, by conversation index
MESSAGES_PER_CONVERSATION = 4
HANDOFF_EVERY = 5  # every 5th conversation ends asking for a person: the bot hands it off
DUPLICATE_RATE = 0.05  # delivered again after the hub took it
RACING_DUPLICATE_RATE = 0.05  # delivered to both instances at once
GIVE_UP_AFTER = 120.0  # seconds one message may take to be taken, retries included
REPLY_WAIT = 1.0  # how long a chat visitor waits for the bot's answer before writing again
ANSWERS = ("bot", "agent")  # authors of the answers a visitor waits for
TEXT = re.compile(r"^(c\d{5}) #(\d+) ")


@dataclass
class Script:
    """One customer's conversation: ``texts`` in order; ``handoff``: the last one asks for a person."""

    index: int
    channel: str
    texts: list[str]
    handoff: bool

    @property
    def key(self) -> str:
        return f"c{self.index:05d}"

    @property
    def address(self) -> str:
        if self.channel == "sms":
            return f"+1555{2_000_000 + self.index:07d}"
        return f"resil-{self.key}"


def scripts(total_messages: int) -> list[Script]:
    """Conversations of ``MESSAGES_PER_CONVERSATION`` messages until ``total_messages`` are written."""
    made: list[Script] = []
    left = total_messages
    index = 0
    while left > 0:
        count = min(MESSAGES_PER_CONVERSATION, left)
        handoff = index % HANDOFF_EVERY == HANDOFF_EVERY - 1
        key = f"c{index:05d}"
        # Words the stand-in Rasa reacts to ("person", "down"...) and SMS
        # keywords (STOP, HELP...) appear only where meant.
        texts = [f"{key} #{k} where is my parcel number {index * 10 + k}" for k in range(count)]
        if handoff:
            texts[-1] = f"{key} #{count - 1} can I talk to a person please"
        made.append(Script(index, CHANNELS[index % len(CHANNELS)], texts, handoff))
        left -= count
        index += 1
    return made


def parse_text(body: str) -> tuple[str, int] | None:
    """The conversation key and the position of a customer's message, from its text."""
    found = TEXT.match(body)
    return (found.group(1), int(found.group(2))) if found else None


@dataclass
class Tally:
    """What the load did, counted from outside."""

    sent: Counter[str] = field(default_factory=Counter)  # distinct messages taken, by channel
    attempts: int = 0  # deliveries made, retries and deliberate duplicates included
    failed_attempts: int = 0  # refused (5xx), dropped or timed out: retried
    duplicates_sent: int = 0  # deliberate second deliveries of a message already taken
    gave_up: list[str] = field(default_factory=list)  # messages no instance took within GIVE_UP_AFTER
    errors: Counter[str] = field(default_factory=Counter)  # why attempts failed
    # Answers of an instance that was up: HTTP 5xx, or a chat's internal_error
    # (a killed instance drops connections instead).
    server_errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, webhook deliveries an instance took
    # Visitor key -> the bot answers its chat showed while open (pushed live, or
    # in the history of a socket resumed after a drop).
    webchat_live: dict[str, set[int]] = field(default_factory=dict)

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    def latency_ms(self, share: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


class Load:
    """Plays ``scripts`` against ``urls`` (the instances) with at most ``concurrency`` customers writing at once."""

    def __init__(self, urls: Sequence[str], scripts: list[Script], *, concurrency: int, seed: int = 18) -> None:
        self.urls = list(urls)
        self.scripts = scripts
        self.concurrency = concurrency
        self.random = random.Random(seed)
        self.tally = Tally()
        self.visitors: dict[str, WebchatVisitor] = {}
        self.chats: list[asyncio.Task[None]] = []
        self.settled = asyncio.Event()  # set when the hub has nothing left to send
        self.http: aiohttp.ClientSession | None = None

    @property
    def planned(self) -> int:
        return sum(len(s.texts) for s in self.scripts)

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
            self.http = http
            try:
                yield
            finally:
                for chat in self.chats:
                    chat.cancel()
                await asyncio.gather(*self.chats, return_exceptions=True)
                self.http = None

    async def write(self) -> None:
        """Every customer writes every message; web chats stay open after, waiting for their answers."""
        queue: asyncio.Queue[Script] = asyncio.Queue()
        for script in self.scripts:
            queue.put_nowait(script)
        await asyncio.gather(*(self._customer(queue) for _ in range(self.concurrency)))

    async def close_chats(self) -> None:
        """Once the hub has sent everything: the chats still open close."""
        self.settled.set()
        await asyncio.gather(*self.chats)

    async def check_histories(self) -> None:
        """Every chat visitor opens the chat once more (on either instance) and reads the whole conversation."""
        gate = asyncio.Semaphore(self.concurrency)

        async def check(index: int, visitor: WebchatVisitor) -> None:
            async with gate:
                await visitor.check_history(self.urls[index % len(self.urls)])

        await asyncio.gather(*(check(i, v) for i, v in enumerate(self.visitors.values())))

    async def _customer(self, queue: asyncio.Queue[Script]) -> None:
        while not queue.empty():
            script = queue.get_nowait()
            if script.channel == "webchat":
                visitor = self.visitors[script.key] = WebchatVisitor(script, self)
                chat = asyncio.create_task(visitor.run(), name=f"chat-{script.key}")
                self.chats.append(chat)
                written = asyncio.create_task(visitor.written.wait())
                await asyncio.wait({chat, written}, return_when=asyncio.FIRST_COMPLETED)
                written.cancel()
            else:
                for position in range(len(script.texts)):
                    await self._webhook(script, position)

    def taken(self, script: Script) -> None:
        self.tally.sent[script.channel] += 1

    # --- signed webhooks (fake channel, SMS) ---------------------------------------
    def _request(
        self, script: Script, position: int
    ) -> tuple[str, bytes | dict[str, str], Callable[[], dict[str, str]]]:
        text = script.texts[position]
        if script.channel == "sms":
            sid = "SM" + hashlib.md5(f"{script.key}-{position}".encode()).hexdigest()
            params = inbound_params(sender=script.address, body=text, message_sid=sid)
            return SMS_PATH, params, lambda: sign_twilio(PUBLIC_URL + SMS_PATH, params)
        item = {
            "from": script.address,
            "text": text,
            "id": f"{script.key}-{position}",
            "name": f"Customer {script.key}",
        }
        raw = json.dumps(item).encode()
        return (
            "/channels/fake/webhook",
            raw,
            lambda: {**sign_fake(FAKE_SECRET, raw), "Content-Type": "application/json"},
        )

    async def _webhook(self, script: Script, position: int) -> None:
        path, body, headers = self._request(script, position)
        first = (script.index + position) % len(self.urls)  # alternate, like a round-robin balancer
        roll = self.random.random()
        if roll < RACING_DUPLICATE_RATE:  # a provider's retry racing its first delivery
            self.tally.duplicates_sent += 1
            results = await asyncio.gather(
                *(self._deliver(path, body, headers, start) for start in range(len(self.urls)))
            )
            taken = any(results)
        else:
            taken = await self._deliver(path, body, headers, first)
            if taken and roll < RACING_DUPLICATE_RATE + DUPLICATE_RATE:  # the 2xx was lost: sent again
                self.tally.duplicates_sent += 1
                await self._deliver(path, body, headers, first + 1)
        if taken:
            self.taken(script)
        else:
            self.tally.gave_up.append(script.texts[position])

    async def _deliver(
        self, path: str, body: bytes | dict[str, str], headers: Callable[[], dict[str, str]], start: int
    ) -> bool:
        """Post until an instance answers 2xx, switching instance after each failure."""
        assert self.http is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP_AFTER
        attempt = 0
        while loop.time() < deadline:
            url = self.urls[(start + attempt) % len(self.urls)] + path
            self.tally.attempts += 1
            sent_at = loop.time()
            try:
                async with self.http.post(url, data=body, headers=headers()) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.tally.latencies.append(loop.time() - sent_at)
                        return True
                    if response.status < 500 and response.status != 429:
                        raise AssertionError(f"{url} refused a genuine delivery: {response.status}")
                    self.tally.errors[f"http {response.status}"] += 1
                    self.tally.server_errors += response.status >= 500
            except (aiohttp.ClientError, TimeoutError) as err:
                self.tally.errors[type(err).__name__] += 1
            self.tally.failed_attempts += 1
            attempt += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * self.random.uniform(0.5, 1.0))
        return False


class WebchatVisitor:
    """A widget: one socket, kept open on the instance the balancer chose
    (visitors alternate between instances), resumed with its token on the
    other instance when it drops; a message is sent until acked, with the
    same ``client_id`` every time. After its last message the socket stays
    open until every answer came, or until the hub has sent everything
    (``Load.settled``), so answers that never reach an open chat are told
    apart from answers sent while none was open.
    """

    def __init__(self, script: Script, load: Load) -> None:
        self.script = script
        self.load = load
        self.token: str | None = None
        self.position = 0  # the next message to send
        self.live: set[int] = load.tally.webchat_live.setdefault(script.key, set())
        self.closed = False  # the conversation is over; the chat is opened once more to read it
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
            answers = len(texts) + self.script.handoff  # an agent answers a handoff too
            while len(self.live) < answers and not self.load.settled.is_set():
                await self._until(ws, lambda f: len(self.live) >= answers, 0.5)
            return True

    async def check_history(self, base: str) -> None:
        """At the end: open the chat once more and read the whole conversation."""
        assert self.load.http is not None
        url = base.replace("http://", "ws://") + "/channels/webchat/ws"
        async with self.load.http.ws_connect(url, headers={"Origin": PUBLIC_URL}, heartbeat=None) as ws:
            await ws.send_json({"type": "resume", "token": self.token, "after_id": 0})
            self.closed = True  # what this socket shows is not counted as shown while the chat was open
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
                if not self.closed:
                    self.live.update(m["id"] for m in shown if m["author"] in ANSWERS)
            elif frame["type"] == "error":
                self.load.tally.errors[f"webchat {frame.get('code')}"] += 1
                self.load.tally.server_errors += frame.get("code") == "internal_error"
                if frame.get("code") in ("unavailable", "internal_error", "rate_limited"):
                    return None  # not taken: sent again on a new connection
                raise AssertionError(f"the hub refused a genuine frame: {frame}")
            if wanted(frame):
                return frame
        return None


class Agent:
    """An agent working the queue over the REST API, through either instance:
    lists the tickets and answers each once, with an ``Idempotency-Key``,
    retrying (on the other instance) until one answers, and sometimes
    posting a reply twice on purpose."""

    def __init__(self, load: Load, token: str) -> None:
        self.load = load
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answered: dict[int, int] = {}  # ticket id -> conversation id
        self.turn = 0

    async def run(self, done: asyncio.Event) -> None:
        """Until ``done`` is set, and one pass more."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                finished = done.is_set()
                tickets, complete = await self._tickets(http)
                for ticket in tickets:
                    if ticket["id"] not in self.answered:
                        await self._answer(http, ticket)
                if finished and complete:
                    return
                await asyncio.sleep(0.5)

    async def _tickets(self, http: aiohttp.ClientSession) -> tuple[list[dict[str, Any]], bool]:
        """Every ticket, page after page (from the start each time: ids are not
        committed in order); and whether the list is complete."""
        found: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            query = "status=all&limit=200" + (f"&after={after}" if after is not None else "")
            page = await self._call(http, "GET", f"/api/v1/tickets?{query}")
            if page is None:
                return found, False  # the rest on the next pass
            found += page["items"]
            after = page["next_after"]
            if after is None:
                return found, True

    async def _answer(self, http: aiohttp.ClientSession, ticket: dict[str, Any]) -> None:
        path = f"/api/v1/conversations/{ticket['conversation_id']}/messages"
        headers = {**self.headers, "Idempotency-Key": f"agent-ticket-{ticket['id']}"}
        body = {"text": agent_text(ticket["id"])}
        times = 2 if self.load.random.random() < DUPLICATE_RATE * 2 else 1
        for _ in range(times):
            while await self._call(http, "POST", path, json=body, headers=headers) is None:
                await asyncio.sleep(0.2)
        self.answered[ticket["id"]] = ticket["conversation_id"]

    async def _call(self, http: aiohttp.ClientSession, method: str, path: str, **options: Any) -> Any:
        """One request to the next instance; None when it failed (to be retried)."""
        self.turn += 1
        url = self.load.urls[self.turn % len(self.load.urls)] + path
        options.setdefault("headers", self.headers)
        try:
            async with http.request(method, url, **options) as response:
                if response.status >= 500:
                    self.load.tally.errors[f"api {response.status}"] += 1
                    self.load.tally.server_errors += 1
                    return None
                assert response.status < 300, (method, path, response.status, await response.text())
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as err:
            self.load.tally.errors[f"api {type(err).__name__}"] += 1
            return None


def agent_text(ticket_id: int) -> str:
    return f"Agent here, I am looking at ticket {ticket_id} for you now."


async def at_progress(load: Load, share: float, action: Callable[[], Awaitable[None]]) -> None:
    """Run ``action`` once ``share`` of the planned messages were taken."""
    while load.tally.total_sent < share * load.planned:
        await asyncio.sleep(0.05)
    await action()
