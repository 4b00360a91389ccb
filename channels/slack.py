"""Slack: the agents' side of the hub (not a customer channel).

This module is transport only: a slack-bolt ``AsyncApp`` behind the aiohttp
route ``POST /channels/slack/events`` (or Socket Mode when
``HUB_SLACK_APP_TOKEN`` is set), the Web API client, and the mapping of
Slack's errors onto ``ChannelSendError``. Bolt verifies every request's v0
signature on the raw body with the 5-minute replay window (401 otherwise)
and answers Slack's URL verification. What bolt would read of a body is
checked here first (``read``), so a body of the wrong shape is a 400 with
the field named rather than a failure inside bolt or the agents' desk. Each listener acks at once and hands
the payload to the hub's handler (``attach``), which does the work in
tracked background tasks; nothing here touches storage.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import build_normalized_headers, extract_content_type, parse_body
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import Channel, InboundMessage, OutboundMessage, SendResult
from hub.errors import ChannelSendError, HubError, InvalidInput, InvalidSignature, NotFound
from hub.inputs import MAX_JSON_DEPTH, ascii_int, clean, json_depth_exceeds

log = logging.getLogger(__name__)


class _WithholdBodies(logging.Filter):
    """Bolt's "Unhandled request" warning quotes the request's body, which
    holds customers' and agents' words: the line keeps only its kind."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Unhandled request ("):
            record.msg, record.args = "Unhandled Slack request: no listener matches it (body withheld)", ()
        return True


BOLT_LOG = logging.getLogger("channels.slack.bolt")
BOLT_LOG.addFilter(_WithholdBodies())

EVENTS_PATH = "/channels/slack/events"
# The callback id of the message shortcut and modal that send a canned reply.
CANNED_REPLY = "canned_reply"
REPLAY_WINDOW_SECONDS = 300
# Slack "error" codes worth another attempt (besides HTTP 429 and 5xx).
RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


class SlackAgentHandler(Protocol):
    """The hub side (``hub.slack.desk.SlackDesk``)."""

    def submit(self, kind: str, body: dict[str, Any]) -> None:
        """Take one acked payload (``event``, ``action``, ``command``,
        ``shortcut`` or ``view``); must not block."""


class SlackChannel(Channel):
    name: ClassVar[str] = "slack"
    identity_kind: ClassVar[str | None] = "slack"
    max_text_len: ClassVar[int | None] = 40_000
    required_settings = ("slack_bot_token", "slack_signing_secret")

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        token = settings.slack_bot_token.get_secret_value()
        secret = settings.slack_signing_secret.get_secret_value()
        self.client = AsyncWebClient(token=token, base_url=settings.slack_api_url, timeout=10)
        self._secret = secret.encode()
        self.bot_user_id: str | None = None
        self._handler: SlackAgentHandler | None = None
        self._app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
        self.bolt = AsyncApp(
            signing_secret=secret,  # the token comes with the client
            client=self.client,
            # The listeners only ack and hand over, so Slack gets its answer
            # well within 3 s, and no untracked task is left behind by bolt.
            process_before_response=True,
            logger=BOLT_LOG,
        )
        self.bolt.event("message")(self._on_event)
        self.bolt.event("app_mention")(self._on_event)
        self.bolt.action(re.compile(r"^ticket_"))(self._on_action)
        self.bolt.command("/hub")(self._on_command)
        # "Send canned reply" on a ticket's card or a message in its thread, and its modal.
        self.bolt.shortcut(CANNED_REPLY)(self._on_shortcut)
        self.bolt.view(CANNED_REPLY)(self._on_view)

    # --- wiring ----------------------------------------------------------------
    def attach(self, handler: SlackAgentHandler | None) -> None:
        self._handler = handler

    def _submit(self, kind: str, body: dict[str, Any]) -> None:
        if self._handler is None:
            log.warning("Slack %s dropped: no agent desk attached", kind)
            return
        self._handler.submit(kind, body)

    async def _on_event(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        self._submit("event", body)

    async def _on_action(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        self._submit("action", body)

    async def _on_command(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        self._submit("command", body)

    async def _on_shortcut(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        self._submit("shortcut", body)

    async def _on_view(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()  # closes the modal; the desk answers by ephemeral message
        self._submit("view", body)

    # --- Channel ----------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.post(EVENTS_PATH, self.handle_events)]

    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        """Events API, interactivity and slash commands share this URL.

        The signature is checked on the raw bytes before anything reads them
        (bolt checks it again), and a body bolt could not read is refused with
        its reason (400) instead of failing inside bolt. What bolt refuses
        (a request no listener handles) is answered in the hub's error body.
        """
        body = await request.read()
        await self.verify(request, body)
        bolt_response = await self.bolt.async_dispatch(self.read(request, body))
        if 400 <= bolt_response.status < 500:
            raise _bolt_refusal(bolt_response)
        return await to_aiohttp_response(bolt_response)

    async def verify(self, request: web.Request, body: bytes) -> None:
        """Slack's v0 signature, on the raw bytes (whatever they hold), in constant time."""
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        # Anything but ASCII digits ("²" passes str.isdigit) is a forgery, not a crash.
        seconds = ascii_int(timestamp)
        if seconds is None or abs(time.time() - seconds) > REPLAY_WINDOW_SECONDS:
            raise InvalidSignature("Slack timestamp missing or outside the replay window")
        expected = "v0=" + hmac.digest(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hex()
        if not self.same_signature(expected, signature):
            raise InvalidSignature("Slack signature missing or forged")

    def parse(self, request: web.Request, body: bytes) -> list[InboundMessage]:
        """Check that bolt can read ``body``; InvalidInput with the reason otherwise.

        Slack carries agents, not customers: nothing enters the customer
        ingest path, so this returns no messages.
        """
        self.read(request, body)
        return []

    def read(self, request: web.Request, body: bytes) -> AsyncBoltRequest:
        """``body`` as the request bolt dispatches; InvalidInput with the reason
        when it is not UTF-8 JSON or form data, breaks the hub's JSON rules
        (``hub.inputs.clean``), or holds a field bolt or the desk reads with a
        type Slack never sends (``check_shape``)."""
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise InvalidInput(f"Slack body nests deeper than {MAX_JSON_DEPTH} levels")
        headers = build_normalized_headers(request.headers)  # type: ignore[arg-type]  # a CIMultiDictProxy, read like the dict bolt's adapter passes
        try:
            text = body.decode("utf-8")  # what Slack sends, whatever the Content-Type's charset says
            # bolt's own reading (JSON, or a form with a JSON ``payload``), so
            # what passes here is exactly what bolt will see.
            payload = parse_body(text, extract_content_type(headers))
        except UnicodeDecodeError as err:
            raise InvalidInput(f"Slack body is not UTF-8: {err.reason}") from err
        except (ValueError, RecursionError) as err:  # JSONDecodeError, an integer of thousands of digits
            raise InvalidInput(f"Slack body is not valid JSON or form data: {err}") from err
        clean(payload)  # the same text and depth rules as every other input
        # Where text enters, a NUL becomes U+FFFD; but bolt reads the body as
        # it came, and Slack never sends one: refused (PostgreSQL cannot store it).
        if _holds_nul(payload):
            raise InvalidInput("Slack body holds a NUL character (U+0000)")
        if not isinstance(payload, dict):
            raise InvalidInput("Slack body is not an object")
        check_shape(payload)
        return AsyncBoltRequest(body=text, query=request.query_string, headers=headers)

    async def send(self, message: OutboundMessage) -> SendResult:
        """Post ``message.text`` to channel ``message.to`` (in thread ``thread_key``)."""
        kwargs: dict[str, Any] = {"channel": message.to, "text": self.check_text(message.text)}
        if message.thread_key:
            kwargs["thread_ts"] = message.thread_key
        data = await self.call("chat.postMessage", **kwargs)
        return SendResult(provider_id=data.get("ts"))

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession()
        self.client.session = session
        socket_handler = None
        try:
            if self._app_token:
                from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

                socket_handler = AsyncSocketModeHandler(self.bolt, self._app_token)
                await socket_handler.connect_async()
            yield
        finally:
            if socket_handler is not None:
                await socket_handler.close_async()
            self.client.session = None
            await session.close()

    # --- Web API -------------------------------------------------------------------
    async def call(self, method: str, *, http_get: bool = False, **kwargs: Any) -> dict[str, Any]:
        """One Web API call; Slack's failures become ``ChannelSendError``
        (retryable for 429 with its Retry-After, 5xx and transport errors).
        ``http_get``: send the arguments as a query string (methods such as
        ``chat.getPermalink`` take no JSON body)."""
        try:
            if http_get:
                response = await self.client.api_call(method, http_verb="GET", params=kwargs)
            else:
                response = await self.client.api_call(method, json=kwargs)
        except SlackApiError as err:
            status = err.response.status_code
            error = err.response.get("error") if isinstance(err.response.data, dict) else None
            if status == 429 or error == "ratelimited":
                retry_after = _retry_after(err.response.headers)
                raise ChannelSendError(
                    f"Slack {method}: rate limited (retry after {retry_after}s)",
                    retryable=True,
                    retry_after=retry_after,
                ) from err
            retryable = status >= 500 or error in RETRYABLE_ERRORS
            raise ChannelSendError(f"Slack {method}: HTTP {status} {error or ''}".strip(), retryable=retryable) from err
        except (TimeoutError, SlackClientError, aiohttp.ClientError, OSError) as err:
            raise ChannelSendError(f"Slack {method}: {type(err).__name__}: {err}", retryable=True) from err
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def whoami(self) -> str | None:
        """The bot's own user id (its messages are never mirrored back)."""
        if self.bot_user_id is None:
            data = await self.call("auth.test")
            self.bot_user_id = data.get("user_id")
        return self.bot_user_id


def _retry_after(headers: Any) -> float:
    value = None
    if headers is not None:
        for key, raw in dict(headers).items():
            if str(key).lower() == "retry-after":
                value = raw[0] if isinstance(raw, list) else raw
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


@dataclass(frozen=True)
class Shape:
    """The fields of one object of a Slack body that bolt (building its
    context, matching listeners) or the agents' desk reads, with the type
    Slack sends them as; ``check`` refuses anything else with the field named
    (bolt would fail on it with a 500, the desk in a background task)."""

    text: tuple[str, ...] = ()  # a string, or absent/null
    ids: tuple[str, ...] = ()  # a string id, or an object whose "id" is a string
    objects: dict[str, Shape] = field(default_factory=dict)
    lists: dict[str, Shape] = field(default_factory=dict)  # lists of such objects

    def check(self, value: dict[str, Any], where: str = "") -> None:
        for name in self.text:
            if value.get(name) is not None and not isinstance(value[name], str):
                raise InvalidInput(f"'{where}{name}' must be a string")
        for name in self.ids:
            item = value.get(name)
            if item is not None and not isinstance(item, str):
                if not isinstance(item, dict):
                    raise InvalidInput(f"'{where}{name}' must be an id or an object")
                ID_OBJECT.check(item, f"{where}{name}.")
        for name, shape in self.objects.items():
            item = value.get(name)
            if item is not None:
                if not isinstance(item, dict):
                    raise InvalidInput(f"'{where}{name}' must be an object")
                shape.check(item, f"{where}{name}.")
        for name, shape in self.lists.items():
            items = value.get(name)
            if items is not None:
                if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                    raise InvalidInput(f"'{where}{name}' must be a list of objects")
                for index, item in enumerate(items):
                    shape.check(item, f"{where}{name}[{index}].")


ID_OBJECT = Shape(text=("id", "team_id", "enterprise_id"))
# An event, or the message an event carries (message_changed: event.message).
MESSAGE = Shape(
    text=("type", "subtype", "text", "ts", "thread_ts", "event_ts", "bot_id", "user_team", "user_id", "channel_id"),
    ids=("user", "team", "channel", "enterprise"),
)
MESSAGE.objects.update(
    message=MESSAGE,
    previous_message=MESSAGE,
    item=Shape(text=("type", "ts"), ids=("channel",)),
    assistant_thread=Shape(text=("thread_ts",), ids=("channel",)),
)
AUTHORIZATION = Shape(text=("team_id", "user_id", "enterprise_id"), ids=("team", "user", "enterprise"))
AUTHORIZATION.lists["authorizations"] = AUTHORIZATION
ACTION = Shape(text=("action_id", "block_id", "value", "type"), objects={"selected_option": Shape(text=("value",))})
BODY = Shape(
    text=(
        "type", "command", "text", "user_id", "team_id", "channel_id", "enterprise_id", "thread_ts", "api_app_id",
        "trigger_id", "response_url", "event_id", "challenge", "callback_id", "function_execution_id",
    ),
    ids=("user", "team", "channel", "enterprise"),
    objects={
        "event": MESSAGE,
        "message": MESSAGE,
        "previous_message": MESSAGE,
        "container": Shape(text=("type", "message_ts", "channel_id", "thread_ts")),
        "view": Shape(text=("id", "type", "team_id", "app_installed_team_id", "callback_id")),
        "function_data": Shape(text=("execution_id",)),
    },
    lists={"authorizations": AUTHORIZATION, "actions": ACTION, "response_urls": Shape(text=("response_url",))},
)  # fmt: skip


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def check_shape(payload: dict[str, Any]) -> None:
    """``payload`` is one of Slack's requests, in the shape bolt and the desk
    read (``BODY``); InvalidInput naming the field otherwise."""
    if not any(key in payload for key in ("type", "command", "ssl_check")):
        raise InvalidInput("Slack body has no 'type' or 'command'")
    if payload.get("type") == "event_callback":
        if not isinstance(payload.get("event"), dict):
            raise InvalidInput("event_callback without an 'event' object")
        if not isinstance(payload["event"].get("type"), str):
            raise InvalidInput("'event.type' must be a string")
    BODY.check(payload)
    if payload.get("type") in ("block_actions", "interactive_message"):
        # bolt matches on actions[0]["action_id"]; the desk reads user.id and channel.id.
        actions = payload.get("actions")
        if not actions or not all(isinstance(action.get("action_id"), str) for action in actions):
            raise InvalidInput("an interaction needs 'actions', each with a string 'action_id'")
        for name in ("user", "channel"):
            if payload.get(name) is not None and not isinstance(payload[name], dict):
                raise InvalidInput(f"'{name}' of an interaction must be an object")


def _bolt_refusal(response: BoltResponse) -> HubError:
    """bolt's 4xx (``{"error": "unhandled request"}``) as the hub's error."""
    if response.status == 401:
        return InvalidSignature("Slack signature refused by bolt")
    if response.status == 404:
        return NotFound("no handler for this Slack request")
    return InvalidInput(f"Slack request refused (HTTP {response.status})")
