"""Hostile input on the channels' own surfaces (issue #13): the chat socket's
frames, the Slack endpoint's headers and the demo page's headers."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.storage import schema
from tests.channels.test_slack import send_signed, slack_api, slack_hub  # noqa: F401  (fixtures)
from tests.channels.test_webchat_support import hello, receive, running_hub
from tests.conftest import Hub

WS = "/channels/webchat/ws"


async def _message_count(hub: Hub) -> int:
    return await hub.db.read(
        lambda conn: conn.execute(sa.select(sa.func.count()).select_from(schema.messages)).scalar()
    )


@pytest.mark.asyncio
async def test_hostile_frames_get_a_clear_error_frame_and_store_nothing(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        ws = await hub.client.ws_connect(WS)
        await hello(ws)
        before = await _message_count(hub)
        cases = [
            # A lone surrogate: valid JSON, not valid Unicode (was internal_error).
            ('{"type": "message", "client_id": "c1", "text": "\\ud800"}', "invalid_input", "'text'"),
            ('{"type": "message", "client_id": "c2", "text": "hi", "contact": {"name": "\\udfff"}}', "invalid_input",
             "'contact.name'"),
            # Nesting beyond 32 levels, within the frame size limit (was internal_error when deeper).
            ('{"type": "ping", "x": ' + "[" * 40 + "]" * 40 + "}", "invalid_json", "deeper than 32"),
            ('{"type": "ping", "x": ' + "[" * 16_000 + "]" * 16_000 + "}", "invalid_json", "deeper than 32"),
            ('{"type": "message", "client_id": "c3", "text": "hi", "n": NaN}', "invalid_json", "NaN"),
            ('{"type": "message", "client_id": "c4", "text": "hi", "n": -Infinity}', "invalid_json", "Infinity"),
        ]  # fmt: skip
        for frame, code, reason in cases:
            await ws.send_str(frame)
            error = await receive(ws)
            assert error["type"] == "error" and error["code"] == code, (frame[:80], error)
            assert reason in error["message"], error
        # The socket is still fine, and nothing was stored.
        await ws.send_json({"type": "ping"})
        assert (await receive(ws))["type"] == "pong"
        assert await _message_count(hub) == before
        # Decomposed text arrives composed.
        await ws.send_json({"type": "message", "client_id": "c5", "text": "Zoe\u0308"})
        ack = await receive(ws)
        assert ack["type"] == "ack" and ack["message"]["text"] == "Zoë"
        await ws.close()


@pytest.mark.asyncio
async def test_demo_page_has_a_content_security_policy(sqlite_url: str, tmp_path: Path) -> None:
    async with running_hub(sqlite_url, tmp_path, echo=False) as hub:
        demo = await hub.client.get("/demo")
        page = await demo.read()
        policy = demo.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["frame-ancestors"] == "'self'" and directives["object-src"] == "'none'"
        assert directives["default-src"] == "'self'" and "unsafe-inline" not in directives["script-src"]
        # The page's own inline handler (the "Chat with us" button) is allowed by its hash, nothing else inline.
        handlers = re.findall(rb'\son[a-z]+="([^"]*)"', page)
        assert handlers
        for handler in handlers:
            digest = base64.b64encode(hashlib.sha256(html.unescape(handler.decode()).encode()).digest()).decode()
            assert f"'sha256-{digest}'" in directives["script-src"]
        assert demo.headers["Referrer-Policy"] == "same-origin"
        assert demo.headers["X-Content-Type-Options"] == "nosniff"
        assert demo.headers["Server"] == "servicehub"


@pytest.mark.asyncio
async def test_slack_timestamp_must_be_ascii_digits(slack_hub: Hub) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c"}).encode()
    for timestamp in ("²", "١٧٠٠٠٠٠٠٠٠", "9" * 5000):
        response = await send_signed(
            slack_hub, body, content_type="application/json", **{"X-Slack-Request-Timestamp": timestamp}
        )
        assert response.status == 401, (timestamp, await response.text())
    deep = b'{"type": "event_callback", "event": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    response = await send_signed(slack_hub, deep, content_type="application/json")
    assert response.status == 400 and "deeper" in (await response.json())["error"]["message"]
