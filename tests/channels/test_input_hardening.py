"""Hostile input on the channels' own surfaces (issue #13): the chat socket's
frames, the Slack endpoint's headers and the demo page's headers."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from hub.errors import InvalidInput
from hub.inputs import load_json
from hub.storage import schema
from tests.channels.test_slack import send_signed, slack_api, slack_hub  # noqa: F401  (fixtures)
from tests.channels.test_webchat_support import hello, receive, receive_until, running_hub
from tests.conftest import FAKE_SECRET, Hub

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


# --- found by the fuzzer (tests/channels/test_fuzz.py): a 500, or an answer without the hub's error body ---
async def _post_fake(hub: Hub, body: bytes, **headers: str) -> tuple[int, dict]:
    from channels.fake import sign

    response = await hub.client.post(
        "/channels/fake/webhook",
        data=body,
        headers={**sign(FAKE_SECRET, body), "Content-Type": "application/json", **headers},
    )
    return response.status, await response.json()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # json.loads raises ValueError (not JSONDecodeError) past 4,300 digits.
        (b"1" * 5000, "number too long to read"),
    ],
    ids=["5000-digits"],
)
async def test_fake_webhook_refuses_what_the_parser_or_database_cannot_take(hub: Hub, body: bytes, reason: str) -> None:
    before = await _message_count(hub)
    status, answer = await _post_fake(hub, body)
    assert status == 400 and reason in answer["error"]["message"], (status, answer)
    assert await _message_count(hub) == before


@pytest.mark.asyncio
async def test_a_nul_in_a_webhook_is_stored_as_a_replacement_character(hub: Hub) -> None:
    # PostgreSQL stores no NUL, in text or JSONB (a 500 there; SQLite stored it).
    status, answer = await _post_fake(hub, b'{"from": "nul-sender", "text": "a\\u0000b", "tier": "g\\u0000ld"}')
    assert status == 200, answer
    [received] = answer["received"]
    stored = await hub.api("GET", f"/api/v1/messages/{received['message_id']}")
    assert stored["body"] == "a\ufffdb" and stored["meta"]["tier"] == "g\ufffdld"


def test_numbers_that_overflow_to_infinity_are_refused_where_json_is_read() -> None:
    # load_json's fast path skipped the walk: {"a": inf}, echoed back as "Infinity" (not JSON).
    with pytest.raises(InvalidInput, match="'a' is not a finite number"):
        load_json(b'{"a": 1e999}')
    assert load_json(b"[1e308, 1e-999]") == [1e308, 0.0]


@pytest.mark.asyncio
async def test_a_signature_header_that_is_not_ascii_is_a_forgery(sqlite_hub: Hub) -> None:
    # hmac.compare_digest raises TypeError on a str with non-ASCII characters.
    status, answer = await _post_fake(sqlite_hub, b"{}", **{"X-Fake-Signature": "v0=é"})
    assert status == 401 and answer["error"]["code"] == "invalid_signature"


@pytest.mark.asyncio
async def test_slack_body_that_is_not_utf8_is_refused_forged_or_signed(slack_hub: Hub) -> None:
    # slack_sdk's SignatureVerifier decoded the body before checking the signature.
    forged = await send_signed(slack_hub, b"\xff", content_type="application/json", secret="not-the-secret")
    assert forged.status == 401
    signed = await send_signed(slack_hub, b"\xff", content_type="application/json")
    assert signed.status == 400 and "not UTF-8" in (await signed.json())["error"]["message"]
    forged_header = await send_signed(
        slack_hub, b"{}", content_type="application/json", **{"X-Slack-Signature": "v0=é"}
    )
    assert forged_header.status == 401


@pytest.mark.asyncio
async def test_slack_body_is_read_as_utf8_whatever_the_charset_says(slack_hub: Hub) -> None:
    # bolt's aiohttp adapter decoded with the header's charset: LookupError for an unknown one.
    body = json.dumps({"type": "url_verification", "challenge": "c"}).encode()
    response = await send_signed(slack_hub, body, content_type="application/json; charset=no-such-codec")
    assert response.status == 200 and (await response.json())["challenge"] == "c"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        # bolt: ValueError past 4,300 digits.
        (b"1" * 5000, "application/json", 400, "not valid JSON"),
        # bolt's context: "id" in 1.5 (TypeError).
        (b'{"type": "block_actions", "user": 1.5}', "application/json", 400, "'user' must be an id or an object"),
        # bolt's context: "x".get (AttributeError).
        (b'{"type": "event_callback", "event": {"type": "message"}, "authorizations": ["x"]}', "application/json", 400,
         "'authorizations' must be a list of objects"),
        # bolt's action matcher: body["actions"][0] (IndexError).
        (b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%5D%7D",
         "application/x-www-form-urlencoded", 400, "needs 'actions'"),
        # bolt's action matcher: action["action_id"] (KeyError).
        (b"payload=" + quote(json.dumps({"type": "block_actions", "actions": [{}]})).encode(),
         "application/x-www-form-urlencoded", 400, "each with a string 'action_id'"),
        # Not a 500 but a crash in the desk's background task: (body["user"] or {}).get("id").
        (b"payload=" + quote(json.dumps({"type": "block_actions", "user": "U1", "actions": [{"action_id": "ticket_claim"}]})).encode(),
         "application/x-www-form-urlencoded", 400, "'user' of an interaction must be an object"),
        # bolt answered its own {"error": "unhandled request"}, not the hub's error body.
        (b"", "application/x-www-form-urlencoded", 400, "no 'type' or 'command'"),
        (b'{"type": "event_callback", "event": {"type": "reaction_added"}}', "application/json", 404,
         "no handler for this Slack request"),
        # A slash command whose user_id holds a NUL: a 500 from PostgreSQL in the desk's task.
        (b"command=%2Fhub&text=queue&user_id=U%00X&channel_id=C1&team_id=T1", "application/x-www-form-urlencoded",
         400, "holds a NUL character"),
    ],
    ids=["5000-digits", "user-float", "authorizations-str", "actions-empty", "action-without-id", "user-str", "empty",
         "unhandled", "command-nul"],
)  # fmt: skip
async def test_slack_bodies_bolt_could_not_take_are_refused_with_the_field(
    slack_hub: Hub, body: bytes, content_type: str, status: int, reason: str
) -> None:
    response = await send_signed(slack_hub, body, content_type=content_type)
    error = (await response.json())["error"]
    assert response.status == status and reason in error["message"], (response.status, error)


@pytest.mark.asyncio
async def test_chat_frames_the_fuzzer_found_get_an_error_frame(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        ws = await hub.client.ws_connect(WS)
        await hello(ws)
        # load_json: ValueError past 4,300 digits (was internal_error).
        await ws.send_str('{"type": "ping", "n": ' + "1" * 5000 + "}")
        error = await receive(ws)
        assert error["type"] == "error" and error["code"] == "invalid_json" and "number too long" in error["message"]
        # A NUL in the text: stored on SQLite, internal_error on PostgreSQL; now a replacement character.
        await ws.send_str('{"type": "message", "client_id": "n1", "text": "a\\u0000b"}')
        ack = await receive_until(ws, "ack")
        assert ack["message"]["text"] == "a\ufffdb", ack
        await ws.close()


def test_bolts_unhandled_request_warning_withholds_the_body(caplog: pytest.LogCaptureFixture) -> None:
    """Bolt's own warning quotes parts of the body: for a menu search, the
    words an agent typed (``value``). The hub's bolt logger withholds them."""
    import logging

    from slack_bolt.logger.messages import warning_unhandled_request
    from slack_bolt.request.async_request import AsyncBoltRequest

    from channels.slack import BOLT_LOG

    body = {"type": "block_suggestion", "action_id": "pick", "block_id": "b", "value": "Ottilie Brannock"}
    request = AsyncBoltRequest(body="payload=" + json.dumps(body))
    assert "Ottilie" in warning_unhandled_request(request)  # what bolt itself would log
    with caplog.at_level(logging.WARNING, logger=BOLT_LOG.name):
        BOLT_LOG.warning(warning_unhandled_request(request))
    [line] = [r.getMessage() for r in caplog.records if r.name == BOLT_LOG.name]
    assert "Ottilie" not in line and "body withheld" in line
