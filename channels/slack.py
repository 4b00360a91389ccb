"""Slack: the agents' side of the hub (not a customer channel).

This module is transport only: a slack-bolt ``AsyncApp`` behind the aiohttp
route ``POST /channels/slack/events`` (or Socket Mode when
``HUB_SLACK_APP_TOKEN`` is set), the Web API client, and the mapping of
Slack's errors onto ``ChannelSendError``. Bolt verifies every request's v0
signature on the raw body with the 5-minute replay window (401 otherwise)
and answers Slack's URL verification. Each listener acks at once and hands
the payload to the hub's handler (``attach``), which does the work in
tracked background tasks; nothing here touches storage.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import parse_body
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import Channel, InboundMessage, OutboundMessage, SendResult
from hub.errors import ChannelSendError, InvalidInput, InvalidSignature
from hub.inputs import MAX_JSON_DEPTH, ascii_int, clean, json_depth_exceeds

log = logging.getLogger(__name__)

EVENTS_PATH = "/channels/slack/events"
# Slack "error" codes worth another attempt (besides HTTP 429 and 5xx).
RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


class SlackAgentHandler(Protocol):
    """The hub side (``hub.slack.desk.SlackDesk``)."""

    def submit(self, kind: str, body: dict[str, Any]) -> None:
        """Take one acked payload (``event``, ``action`` or ``command``); must not block."""


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
        self.verifier = SignatureVerifier(secret)
        self.bot_user_id: str | None = None
        self._handler: SlackAgentHandler | None = None
        self._app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
        self.bolt = AsyncApp(
            signing_secret=secret,  # the token comes with the client
            client=self.client,
            # The listeners only ack and hand over, so Slack gets its answer
            # well within 3 s, and no untracked task is left behind by bolt.
            process_before_response=True,
            logger=logging.getLogger("channels.slack.bolt"),
        )
        self.bolt.event("message")(self._on_event)
        self.bolt.event("app_mention")(self._on_event)
        self.bolt.action(re.compile(r"^ticket_"))(self._on_action)
        self.bolt.command("/hub")(self._on_command)

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

    # --- Channel ----------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.post(EVENTS_PATH, self.handle_events)]

    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        """Events API, interactivity and slash commands share this URL.

        The signature is checked on the raw bytes before anything reads them
        (bolt checks it again), and a body bolt could not read is refused with
        its reason (400) instead of failing inside bolt.
        """
        body = await request.read()
        await self.verify(request, body)
        self.parse(request, body)
        bolt_response = await self.bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def verify(self, request: web.Request, body: bytes) -> None:
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        # is_valid reads the timestamp with int(): anything but ASCII digits
        # ("²" passes str.isdigit) is a forgery, not a crash.
        if ascii_int(timestamp) is None or not self.verifier.is_valid(body, timestamp, signature):
            raise InvalidSignature("Slack signature missing, forged or outside the replay window")

    def parse(self, request: web.Request, body: bytes) -> list[InboundMessage]:
        """Check that bolt can read ``body``; InvalidInput with the reason otherwise.

        Slack carries agents, not customers: nothing enters the customer
        ingest path, so this returns no messages.
        """
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise InvalidInput(f"Slack body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            # bolt's own reading (JSON, or a form with a JSON ``payload``), so
            # what passes here is exactly what bolt will accept.
            payload = parse_body(body.decode(), request.content_type)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise InvalidInput(f"Slack body is not valid JSON or form data: {err}") from err
        clean(payload)  # the same text and depth rules as every other input
        if not isinstance(payload, dict):
            raise InvalidInput("Slack body is not an object")
        if payload.get("type") == "event_callback" and not isinstance(payload.get("event"), dict):
            raise InvalidInput("event_callback without an 'event' object")
        return []

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
