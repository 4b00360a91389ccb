"""Fuzzing every channel's input (issue #13, "Must show"): generated bodies
posted to every webhook and generated frames sent to the chat socket never
get a 500 or an ``internal_error``.

One live hub per module (and per database of ``HUB_TEST_DATABASE_URLS``)
runs every channel that takes input, on an event loop in its own thread, so
the hypothesis tests stay synchronous and share it (no function-scoped
fixture is involved). What the fuzz stores stays in that hub's throwaway
database.

The properties:

- a webhook never answers 5xx; a 4xx carries the JSON error body
  (``{"error": {"code", "message"}}``) with a reason; a forged or unsigned
  delivery is a 401 (or a 413 when the body is beyond the limit: it is
  refused before it is read);
- the chat socket, after a real visitor-token handshake (or none, or a
  resume), never sends ``internal_error`` and never closes with 1011, nor
  with any code but the protocol's own: 4401 for a bad token, and only after
  a frame the WebSocket layer refuses, 1009 (beyond the size limit), 1007
  (not UTF-8), 1002 (out of sequence);
- nothing the hub logs carries an exception (a background task's failure
  shows in no answer);
- afterwards every target still takes a valid delivery, and the hub is healthy.

The targets are data: one ``WebhookTarget`` per webhook route (its path,
body strategy, signer and what the hub needs to run the channel). A new
channel joins with its signer in ``signing.py`` and one entry in
``WEBHOOKS``, as SMS did (``TWILIO_SIGNER`` signs the URL and the sorted
form fields; the URL the fuzz posted to reaches ``Signer.headers``; the hub's
``HUB_PUBLIC_URL`` is that URL, and Twilio's refusals are 403s).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.slack import EVENTS_PATH
from tests.channels.hostile import (
    deep_values,
    form_bodies,
    json_bodies,
    json_text,
    json_values,
    mutated,
    not_json,
    payload_form,
    short_texts,
    weighted,
)
from tests.channels.signing import FAKE_SIGNER, SLACK_SIGNER, TWILIO_SIGNER, Signer
from tests.channels.test_contract import fixture
from tests.conftest import Hub, backend_id, database_urls, free_port, fresh_database, make_settings, start_hub
from tests.fakes.slack_api import FakeSlackApi, block_action_body, command_body
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi, inbound_params

T = TypeVar("T")
JSON, FORM = "application/json", "application/x-www-form-urlencoded"
WEBCHAT_SECRET = "fuzz-webchat-secret"
SETTLE = 0.5  # for the background tasks of the last example (the Slack desk's)
WS = "/channels/webchat/ws"

# Deterministic and bounded: the module (every target, on SQLite and
# PostgreSQL) in about a minute on two cores. HUB_FUZZ_EXAMPLES raises the
# count for a longer hunt; the examples stay the same for the same count.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=int(os.environ.get("HUB_FUZZ_EXAMPLES", "500")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the targets ----------------------------------------------------------------------
async def fake_settings(stack: AsyncExitStack) -> dict[str, Any]:
    return {"fake_secret": FAKE_SIGNER.secret}


async def slack_settings(stack: AsyncExitStack) -> dict[str, Any]:
    api = await FakeSlackApi().start()
    stack.push_async_callback(api.close)
    return {
        "slack_bot_token": "xoxb-fuzz-token",
        "slack_signing_secret": SLACK_SIGNER.secret,
        "slack_api_url": api.base_url,
        "slack_default_channel": "CSUPPORT",
    }


async def sms_settings(stack: AsyncExitStack) -> dict[str, Any]:
    api = await FakeTwilioApi().start()
    stack.push_async_callback(api.close)
    return {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": "+15005550006",
        "twilio_api_url": api.base_url,
    }


@dataclass(frozen=True)
class WebhookTarget:
    name: str
    path: str
    content_type: str  # what the provider sends; the fuzz sends others too
    bodies: st.SearchStrategy[bytes]
    signer: Signer
    # Starts what the channel needs (a vendor stand-in) on the stack; returns its hub settings.
    settings: Callable[[AsyncExitStack], Awaitable[dict[str, Any]]]
    valid: Callable[[], bytes]  # a genuine delivery, accepted with a 2xx
    channel: str = ""  # its name in the registry; by default the target's name up to a "-"
    refusal: int = 401  # what a forgery gets (Twilio documents 403)

    def __post_init__(self) -> None:
        if not self.channel:
            object.__setattr__(self, "channel", self.name.split("-")[0])


FAKE_ITEM = {
    "from": "+15551230001",
    "name": "Ada Lovelace",
    "id": "fuzz-1",
    "text": "Where is my order?",
    "subject": "Order #10442",
    "thread": "order-10442",
    "tier": "gold",
    "hints": {"email": "ada@example.test"},
    "hints_verified": False,
}
SLACK_EVENT = json.loads(
    fixture(
        "slack", "valid.json", user="UAGENT1", channel="CSUPPORT", thread_ts="1700000000.000100",
        ts="1700000001.000200", external_id="Ev0FUZZ", text="On it",
    )
)  # fmt: skip
URL_VERIFICATION = {"token": "legacy", "challenge": "fuzz-challenge", "type": "url_verification"}
BLOCK_ACTION = json.loads(
    dict(
        parse_qsl(
            block_action_body(
                user="UAGENT1", channel="CSUPPORT", message_ts="1700000000.000100", action_id="ticket_claim", value="1"
            ).decode()
        )
    )["payload"]
)
SLASH_COMMAND = dict(parse_qsl(command_body(user="UAGENT1", channel="CSUPPORT", text="queue").decode()))


TWILIO_SMS = inbound_params(sender="+15551230001", body="Where is my order?", message_sid="SM" + "f" * 32)


def _sms_valid() -> bytes:
    return urlencode({**TWILIO_SMS, "MessageSid": f"SM{time.time_ns():032x}"}).encode()


def _fake_valid() -> bytes:
    return json.dumps({**FAKE_ITEM, "id": f"fuzz-valid-{time.time_ns()}"}).encode()


WEBHOOKS = [
    WebhookTarget(
        "fake", "/channels/fake/webhook", JSON, json_bodies(FAKE_ITEM, [FAKE_ITEM, FAKE_ITEM]), FAKE_SIGNER,
        fake_settings, _fake_valid,
    ),
    WebhookTarget(
        "slack-events", EVENTS_PATH, JSON, json_bodies(SLACK_EVENT, URL_VERIFICATION), SLACK_SIGNER, slack_settings,
        lambda: json.dumps(URL_VERIFICATION).encode(),
    ),
    WebhookTarget(
        "slack-interactivity", EVENTS_PATH, FORM, payload_form(BLOCK_ACTION), SLACK_SIGNER, slack_settings,
        lambda: urlencode({"payload": json.dumps(BLOCK_ACTION)}).encode(),
    ),
    WebhookTarget(
        "slack-commands", EVENTS_PATH, FORM, form_bodies(SLASH_COMMAND), SLACK_SIGNER, slack_settings,
        lambda: urlencode(SLASH_COMMAND).encode(),
    ),
    WebhookTarget(
        "sms", "/channels/sms/twilio", FORM, form_bodies(TWILIO_SMS), TWILIO_SIGNER, sms_settings, _sms_valid,
        refusal=403,
    ),
]  # fmt: skip

# Mostly what the provider sends; sometimes a type that disagrees with the
# body, a charset Python does not know or that does not fit the bytes.
OTHER_CONTENT_TYPES = [
    JSON, FORM, "text/plain", None, "Application/JSON", "application/json; charset=utf-16",
    "application/json; charset=no-such-codec", f"{FORM}; charset=latin-1", "multipart/form-data; boundary=x",
]  # fmt: skip


def content_types(usual: str) -> st.SearchStrategy[str | None]:
    return st.one_of(st.just(usual), st.just(usual), st.sampled_from(OTHER_CONTENT_TYPES))


# --- the live hub ---------------------------------------------------------------------
class Crashes(logging.Handler):
    """Every exception the hub logs: a 500, a failed frame handler, and what
    no answer shows, a failed background task (the Slack desk's)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None:
            self.seen.append(f"{record.name}: {record.getMessage()[:200]} ({record.exc_info[0].__name__})")

    def check(self) -> None:
        seen, self.seen = self.seen, []
        assert seen == [], seen


class LiveHub:
    """A hub running on an event loop in its own thread; ``run`` awaits on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-hub", daemon=True)
        self.stack = AsyncExitStack()
        self.crashes = Crashes()
        self.hub: Hub

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def start(self, base_url: str, tmp_path: Path) -> None:
        database_url = await self.stack.enter_async_context(fresh_database(base_url, tmp_path))
        channel_settings: dict[str, Any] = {}
        for target in WEBHOOKS:
            channel_settings.update(await target.settings(self.stack))
        channels = sorted({target.channel for target in WEBHOOKS} | {"webchat"})
        # Twilio signs the URL it calls: the hub's public URL is the one the fuzz posts to.
        port = free_port()
        settings = make_settings(
            database_url,
            tmp_path,
            channels=",".join(channels),
            public_url=f"http://127.0.0.1:{port}",
            webchat_secrets=WEBCHAT_SECRET,
            # The limits are not under test here: every frame should reach parsing.
            webchat_session_rate=10_000.0,
            webchat_session_burst=10_000,
            webchat_ip_rate=10_000.0,
            webchat_ip_burst=10_000,
            webchat_max_sockets_per_ip=1_000,
            **channel_settings,
        )
        self.hub = await start_hub(settings, server_port=port)

        async def stop() -> None:
            await self.hub.channel("webchat").on_shutdown(self.hub.app)
            await self.hub.client.close()

        self.stack.push_async_callback(stop)

    async def post(self, target: WebhookTarget, body: bytes, content_type: str | None, forgery: str | None) -> Reply:
        url = str(self.hub.client.make_url(target.path))
        headers = target.signer.headers(body, url=url, forgery=forgery)
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with self.hub.client.post(target.path, data=body, headers=headers) as response:
            return Reply(response.status, response.content_type, await response.read())


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def check(self, *, forged: bool, refusal: int = 401) -> None:
        """Never 5xx; a 4xx says why in the hub's JSON error body; a forgery
        is a 401 or the vendor's 403 (or a 413: a body beyond the limit is
        refused before it is read)."""
        assert self.status < 500, self
        if forged:
            assert self.status in (refusal, 413), self
        if 400 <= self.status < 500:
            assert self.content_type == JSON, self
            error = json.loads(self.body)["error"]
            assert isinstance(error["code"], str) and error["code"], self
            assert isinstance(error["message"], str) and error["message"].strip(), self


@pytest.fixture(scope="module", params=database_urls(), ids=backend_id)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    running = LiveHub()
    running.thread.start()
    logging.getLogger().addHandler(running.crashes)
    try:
        running.run(running.start(request.param, tmp_path_factory.mktemp("fuzz")))
        yield running
    finally:
        try:
            running.run(running.stack.aclose())
        finally:
            logging.getLogger().removeHandler(running.crashes)
            running.loop.call_soon_threadsafe(running.loop.stop)
            running.thread.join(timeout=30)
            running.loop.close()


# --- webhooks -------------------------------------------------------------------------
@pytest.mark.parametrize("target", WEBHOOKS, ids=lambda target: target.name)
def test_generated_webhook_bodies_never_fail(live: LiveHub, target: WebhookTarget) -> None:
    forgeries = st.sampled_from([None, None, None, *target.signer.forgeries])

    @FUZZ
    @given(body=target.bodies, content_type=content_types(target.content_type), forgery=forgeries)
    def deliver(body: bytes, content_type: str | None, forgery: str | None) -> None:
        live.run(live.post(target, body, content_type, forgery)).check(
            forged=forgery is not None, refusal=target.refusal
        )
        live.crashes.check()  # this example's, or a background task of the one before

    live.crashes.check()
    deliver()
    time.sleep(SETTLE)
    live.crashes.check()
    # The channel still takes a genuine delivery.
    reply = live.run(live.post(target, target.valid(), target.content_type, None))
    assert 200 <= reply.status < 300, reply


# --- the chat socket ------------------------------------------------------------------
# Every frame the protocol knows, valid; the fuzz mutates them. "<<token>>"
# becomes the visitor's real token when sent.
TOKEN = "<<token>>"
FRAMES = [
    {"type": "hello", "after_id": 1, "user": {"user_id": "u1", "email": "ada@example.test", "name": "Ada"}},
    {"type": "resume", "token": TOKEN, "after_id": 1},
    {"type": "message", "client_id": "c1", "text": "Hello?", "contact": {"name": "Ada", "email": "ada@example.test"}},
    {"type": "typing", "active": True},
    {"type": "read", "last_id": 1},
    {"type": "history", "after_id": 0, "limit": 50, "conversation_id": 1},
    {"type": "ping"},
]
MAX_FRAME = 32_768  # HUB_WEBCHAT_MAX_FRAME_BYTES' default
frame_values = weighted(*[(3, mutated(frame)) for frame in FRAMES], (1, json_values), (1, deep_values))


@dataclass(frozen=True)
class Frame:
    opcode: WSMsgType
    data: bytes

    @property
    def ends_socket(self) -> bool:
        """A frame the WebSocket layer itself refuses by closing: out of
        sequence (1002), text that is not UTF-8 (1007), beyond 4x the limit (1009)."""
        if self.opcode == WSMsgType.CONTINUATION or len(self.data) > 4 * MAX_FRAME:
            return True
        try:
            self.data.decode("utf-8")
        except UnicodeDecodeError:
            return self.opcode == WSMsgType.TEXT
        return False


def _text(text: str) -> Frame:
    return Frame(WSMsgType.TEXT, text.encode("utf-8", "surrogatepass"))


# Mostly JSON frames of the protocol, damaged; the frames that end the socket
# (not UTF-8, beyond 4x the limit, out of sequence) rarely, as they end the example.
frames = weighted(
    (16, json_text(frame_values).map(_text)),
    (1, short_texts.map(_text)),  # not JSON
    (1, st.binary(max_size=64).map(lambda data: Frame(WSMsgType.BINARY, data))),
    (1, st.just(_text(json.dumps({"type": "message", "client_id": "big", "text": "x" * (MAX_FRAME + 1)})))),
    (1, not_json.map(lambda data: Frame(WSMsgType.TEXT, data))),  # possibly not UTF-8: 1007
    (1, st.just(_text(json.dumps({"type": "message", "client_id": "huge", "text": "x" * (4 * MAX_FRAME + 1)})))),
    (1, st.just(Frame(WSMsgType.CONTINUATION, b"out of sequence"))),  # 1002
)
CLOSE_INVALID_TOKEN = 4401
# After a frame that ends the socket the connection may also drop before the
# close frame is read (1006): the server closed it while the client still sent.
PROTOCOL_CLOSES = {1002, 1006, 1007, 1009}


async def chat(hub: Hub, handshake: str, sent: list[Frame]) -> list[str]:
    """Open a socket, say hello (or resume, or nothing), send ``sent``, then a
    ping; every problem seen on the way back (an internal error, a close the
    protocol does not have)."""
    problems: list[str] = []
    ends_socket = any(frame.ends_socket for frame in sent)
    token = ""
    if handshake == "resume":  # a visitor back with the token of an earlier socket
        first = await hub.client.ws_connect(WS)
        await first.send_json({"type": "hello"})
        token = (await first.receive_json(timeout=10))["token"]
        await first.close()
    ws = await hub.client.ws_connect(WS)
    try:
        if handshake in ("hello", "resume"):
            await ws.send_json({"type": handshake, **({"token": token} if token else {})})
            welcome = await ws.receive_json(timeout=10)
            assert welcome["type"] == "welcome", welcome
            token = welcome["token"]
        try:
            for frame in sent:
                await ws.send_frame(frame.data.replace(TOKEN.encode(), token.encode()), frame.opcode)
            await ws.send_json({"type": "ping"})
        except (ConnectionError, aiohttp.ClientConnectionError):
            pass  # closed under us: the close is checked below
        while True:
            msg = await ws.receive(timeout=15)
            if msg.type == WSMsgType.TEXT:
                reply = json.loads(msg.data)
                if reply.get("type") == "error" and reply.get("code") == "internal_error":
                    problems.append(f"internal_error: {reply}")
                if reply.get("type") == "pong":
                    break
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                allowed = {CLOSE_INVALID_TOKEN} | (PROTOCOL_CLOSES if ends_socket else set())
                if ws.close_code not in allowed:
                    problems.append(f"closed with {ws.close_code} ({msg.extra})")
                break
            else:  # ERROR: the connection dropped
                if not ends_socket:
                    problems.append(f"socket {msg.type.name}: {msg.data!r}")
                break
    finally:
        await ws.close()
    return problems


def test_generated_chat_frames_never_fail(live: LiveHub) -> None:
    @FUZZ
    @given(handshake=st.sampled_from(["hello", "resume", "none"]), sent=st.lists(frames, min_size=1, max_size=5))
    def converse(handshake: str, sent: list[Frame]) -> None:
        assert live.run(chat(live.hub, handshake, sent)) == []
        live.crashes.check()

    live.crashes.check()
    converse()
    time.sleep(SETTLE)
    live.crashes.check()


# --- afterwards -----------------------------------------------------------------------
def test_hub_still_serves_after_the_fuzz(live: LiveHub) -> None:
    async def check() -> None:
        health = await live.hub.client.get("/readyz")
        assert health.status == 200, await health.text()
        for target in WEBHOOKS:
            reply = await live.post(target, target.valid(), target.content_type, None)
            assert 200 <= reply.status < 300, (target.name, reply)
        async with live.hub.client.ws_connect(WS) as ws:
            await ws.send_json({"type": "hello"})
            assert (await ws.receive_json(timeout=10))["type"] == "welcome"
            await ws.send_json({"type": "message", "client_id": "after-fuzz", "text": "Still there?"})
            while (frame := await ws.receive_json(timeout=10))["type"] != "ack":
                assert frame["type"] != "error", frame

    live.run(check())
