"""A loopback stand-in for the Slack Web API (aiohttp ``examples/fake_server.py`` style).

Point the real ``slack_sdk.web.async_client.AsyncWebClient`` at it with
``base_url=f"http://127.0.0.1:{port}/api/"``. It records every call and can
answer 429 (with Retry-After) or 5xx on demand. Also: ``sign_request`` makes
event and interaction requests signed with Slack's real v0 algorithm.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.test_utils import TestServer

BOT_USER_ID = "UHUBBOT"
BOT_ID = "BHUBBOT"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass
class FakeSlackApi:
    calls: list[Call] = field(default_factory=list)
    # method -> queued failures: (status, retry_after or None)
    failures: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the workspace holds now: (channel, ts) -> message (posted, updated, deleted).
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # method -> a gate its calls wait at (recorded, not yet answered) until it
    # is set; ``held`` counts the calls that reached it.
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    _ts: Any = field(default_factory=lambda: itertools.count(1))
    _last_ts: float = 0.0
    server: TestServer | None = None

    # --- control ----------------------------------------------------------------
    def fail(self, method: str, status: int = 500, *, retry_after: float | None = None, times: int = 1) -> None:
        self.failures.setdefault(method, []).extend([(status, retry_after)] * times)

    def hold(self, method: str) -> asyncio.Event:
        """Calls of ``method`` wait until the returned event is set."""
        self.gates[method] = gate = asyncio.Event()
        return gate

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/api/"

    async def start(self) -> FakeSlackApi:
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    # --- the API -----------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if raw:
            if request.content_type == "application/json":
                args.update(json.loads(raw))
            else:
                args.update(dict(parse_qsl(raw.decode())))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or args.pop("token", None)
        self.calls.append(Call(method, args, token))
        gate = self.gates.get(method)
        if gate is not None and not gate.is_set():
            self.held[method] = self.held.get(method, 0) + 1
            await gate.wait()
        queued = self.failures.get(method)
        if queued:
            status, retry_after = queued.pop(0)
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            error = "ratelimited" if status == 429 else ("internal_error" if status >= 500 else "channel_not_found")
            return web.json_response({"ok": False, "error": error}, status=status, headers=headers)
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        return web.json_response(handler(args))

    def _next_ts(self) -> str:
        # Slack's ts: the post's epoch time in microseconds, unique in its channel.
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def api_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.test/",
            "team": "Fake",
            "user": "hub",
            "team_id": "T0FAKE",
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._next_ts()
        self.messages[(str(args.get("channel")), ts)] = {
            "ts": ts,
            "text": args.get("text"),
            "blocks": args.get("blocks"),
            "thread_ts": args.get("thread_ts"),
            "bot_id": BOT_ID,
        }
        metadata = args.get("metadata")
        if isinstance(metadata, str):  # a form-encoded call sends it as JSON text
            metadata = json.loads(metadata)
        if metadata:
            self.messages[(str(args.get("channel")), ts)]["metadata"] = metadata
        return {
            "ok": True,
            "channel": args.get("channel"),
            "ts": ts,
            "message": {"text": args.get("text"), "ts": ts, "bot_id": BOT_ID, "thread_ts": args.get("thread_ts")},
        }

    def api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        stored = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if stored is None:
            return {"ok": False, "error": "message_not_found"}
        stored.update(text=args.get("text"), blocks=args.get("blocks"))
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}

    def api_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.messages.pop((str(args.get("channel")), str(args.get("ts"))), None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}

    def api_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        if (channel, ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        """A thread: its parent first, then its replies oldest first (``oldest``
        and ``latest`` exclusive, on replies); ``limit`` and ``cursor`` page;
        ``metadata`` only with ``include_all_metadata`` true, as Slack does."""
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("true", "1")
        parent = self.messages[(channel, ts)]
        replies = sorted(
            (
                m
                for (c, _), m in self.messages.items()
                if c == channel and m["ts"] != ts and m["thread_ts"] == ts and oldest < float(m["ts"]) < latest
            ),
            key=lambda m: float(m["ts"]),
        )
        start, limit = int(args.get("cursor") or 0), min(int(args.get("limit") or 1000), 1000)
        thread = [parent, *replies][start : start + limit]
        more = start + limit < len(replies) + 1
        return {
            "ok": True,
            "messages": [{k: v for k, v in m.items() if with_metadata or k != "metadata"} for m in thread],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def api_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's messages, newest first, without thread replies; ``oldest``
        and ``latest`` exclusive; ``limit`` and ``cursor`` page; a message's
        ``metadata`` only with ``include_all_metadata`` true, as Slack does."""
        channel = str(args.get("channel"))
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("true", "1")
        found = sorted(
            (
                m
                for (c, _), m in self.messages.items()
                if c == channel and oldest < float(m["ts"]) < latest and m.get("thread_ts") in (None, m["ts"])
            ),
            key=lambda m: float(m["ts"]),
            reverse=True,
        )
        start, limit = int(args.get("cursor") or 0), min(int(args.get("limit") or 100), 999)
        page = [
            {"type": "message", **{k: v for k, v in m.items() if v is not None and (with_metadata or k != "metadata")}}
            for m in found[start : start + limit]
        ]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def add_user_message(self, channel: str, text: str, *, thread_ts: str | None = None) -> str:
        """A message a person posted (an agent's thread reply): stored, not the bot's."""
        ts = self._next_ts()
        self.messages[(channel, ts)] = {"ts": ts, "text": text, "blocks": None, "thread_ts": thread_ts, "user": "U"}
        return ts

    def api_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel", ""), args.get("message_ts", "")
        return {
            "ok": True,
            "channel": channel,
            "permalink": f"https://fake.slack.test/archives/{channel}/p{ts.replace('.', '')}",
        }

    def api_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self._next_ts()}

    def api_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = args.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        return {"ok": True, "view": {**(view or {}), "id": f"V{next(self._ts)}"}}

    def api_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(args.get("user", ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}


def sign_request(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature: ``v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_body(event: dict[str, Any], *, event_id: str, team: str = "T0FAKE") -> bytes:
    return json.dumps(
        {
            "token": "legacy-verification-token",
            "team_id": team,
            "api_app_id": "A0FAKE",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": team, "user_id": BOT_USER_ID, "is_bot": True}],
        }
    ).encode()


def form_body(fields: dict[str, Any]) -> bytes:
    return urlencode(fields).encode()


def block_action_body(
    *, user: str, channel: str, message_ts: str, action_id: str, value: str, selected: bool = False
) -> bytes:
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": "ticket",
        "type": "button",
        "action_ts": str(time.time()),
    }
    if selected:
        action.update(
            type="static_select", selected_option={"value": value, "text": {"type": "plain_text", "text": value}}
        )
    else:
        action["value"] = value
    payload = {
        "type": "block_actions",
        "team": {"id": "T0FAKE"},
        "user": {"id": user, "username": user},
        "api_app_id": "A0FAKE",
        "trigger_id": f"trigger-{time.time_ns()}",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel},
        "message": {"ts": message_ts},
        "response_url": "https://hooks.slack.invalid/actions/x",
        "actions": [action],
    }
    return form_body({"payload": json.dumps(payload)})


def message_shortcut_body(
    *, user: str, channel: str, message_ts: str, thread_ts: str | None, callback_id: str
) -> bytes:
    """A message shortcut's payload, as Slack posts it (form field ``payload``)."""
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "text": "x", "user": user}
    if thread_ts:
        message["thread_ts"] = thread_ts
    payload = {
        "type": "message_action",
        "callback_id": callback_id,
        "trigger_id": f"trigger-{time.time_ns()}",
        "team": {"id": "T0FAKE"},
        "user": {"id": user, "username": user},
        "channel": {"id": channel, "name": "support"},
        "message_ts": message_ts,
        "message": message,
        "response_url": "https://hooks.slack.invalid/actions/x",
        "api_app_id": "A0FAKE",
    }
    return form_body({"payload": json.dumps(payload)})


def view_submission_body(*, user: str, callback_id: str, private_metadata: str, values: dict[str, Any]) -> bytes:
    """A modal submitted: ``values`` is the view's ``state.values``."""
    payload = {
        "type": "view_submission",
        "team": {"id": "T0FAKE"},
        "user": {"id": user, "username": user},
        "api_app_id": "A0FAKE",
        "trigger_id": f"trigger-{time.time_ns()}",
        "view": {
            "id": f"V{time.time_ns()}",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": values},
        },
    }
    return form_body({"payload": json.dumps(payload)})


def command_body(*, user: str, channel: str, text: str) -> bytes:
    return form_body(
        {
            "token": "legacy",
            "team_id": "T0FAKE",
            "channel_id": channel,
            "user_id": user,
            "command": "/hub",
            "text": text,
            "response_url": "https://hooks.slack.invalid/commands/x",
            "trigger_id": f"t-{time.time_ns()}",
            "api_app_id": "A0FAKE",
        }
    )
