"""The web chat protocol over a real socket: conversation, reliability, security, limits."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from channels.webchat.security import VisitorClaims, VisitorTokens, user_hash
from hub.messages import OutboundMessage
from hub.ratelimit import RateLimiter, TokenBucket, TokenBuckets
from tests.channels.test_webchat_support import (
    IDENTITY_SECRET,
    SECRET,
    hello,
    receive,
    receive_until,
    running_hub,
    webchat_settings,
)
from tests.conftest import Hub, wait_for

WS = "/channels/webchat/ws"


async def timeline_bodies(hub: Hub, conversation_id: int) -> list[str]:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    return [m["body"] for m in page["items"] if m["kind"] == "message"]


@pytest.mark.asyncio
async def test_assets_are_served(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        js = await hub.client.get("/widget.js")
        assert js.status == 200 and js.content_type == "application/javascript"
        source = await js.text()
        assert "attachShadow" in source and "innerHTML" not in source
        css = await hub.client.get("/widget.css")
        assert css.status == 200 and css.content_type == "text/css"
        demo = await hub.client.get("/demo")
        page = await demo.text()
        assert demo.status == 200 and "Northwind Outfitters" in page and "/widget.js" in page


@pytest.mark.asyncio
async def test_message_gets_ack_and_live_echo_then_history_on_resume(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path) as hub:
        ws = await hub.client.ws_connect(WS)
        welcome, history = await hello(ws)
        assert welcome["conversation_id"] is None and history["messages"] == []
        assert welcome["identity"] == "anonymous" and welcome["agents_online"] is True
        await ws.send_json({"type": "message", "client_id": "c1", "text": "Where is <b>my</b> order?"})
        ack = await receive_until(ws, "ack")
        assert ack["client_id"] == "c1" and ack["duplicate"] is False
        assert ack["message"]["author"] == "customer" and ack["message"]["client_id"] == "c1"
        reply = await receive_until(ws, "message")
        assert reply["message"]["text"] == "Echo: Where is <b>my</b> order?"
        assert reply["message"]["author"] == "bot" and reply["message"]["id"] > ack["message"]["id"]
        await ws.close()

        # A reload: a new socket with the stored token sees the whole conversation.
        again = await hub.client.ws_connect(WS)
        welcome2, history2 = await hello(again, token=welcome["token"])
        assert welcome2["visitor_id"] == welcome["visitor_id"]
        assert [m["text"] for m in history2["messages"]] == [
            "Where is <b>my</b> order?",
            "Echo: Where is <b>my</b> order?",
        ]
        assert history2["messages"][0]["client_id"] == "c1"
        # Resuming after the last seen id returns only what was missed.
        third = await hub.client.ws_connect(WS)
        _, missed = await hello(third, token=welcome["token"], after_id=ack["message"]["id"])
        assert [m["id"] for m in missed["messages"]] == [reply["message"]["id"]]
        # A delivered reply is marked delivered on the timeline.
        await wait_for(lambda: _delivery(hub, reply["message"]["id"], "delivered"))


async def _delivery(hub: Hub, message_id: int, wanted: str) -> bool:
    message = await hub.api("GET", f"/api/v1/messages/{message_id}")
    return message["delivery_status"] == wanted


@pytest.mark.asyncio
async def test_retried_client_id_is_stored_once_and_acked_with_same_id(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        ws = await hub.client.ws_connect(WS)
        welcome, _ = await hello(ws)
        frame = {"type": "message", "client_id": "same-1", "text": "Refund please"}
        await ws.send_json(frame)
        first = await receive_until(ws, "ack")
        await ws.close()
        # The widget lost the ack, reconnected and sent the queued message again.
        ws2 = await hub.client.ws_connect(WS)
        await hello(ws2, token=welcome["token"])
        await ws2.send_json(frame)
        second = await receive_until(ws2, "ack")
        assert second["duplicate"] is True and second["message"]["id"] == first["message"]["id"]
        conversation_id = (await hub.api("GET", f"/api/v1/messages/{first['message']['id']}"))["conversation_id"]
        assert await timeline_bodies(hub, conversation_id) == ["Refund please"]
        message = await hub.api("GET", f"/api/v1/messages/{first['message']['id']}")
        assert message["external_id"] == f"{welcome['visitor_id']}:same-1"


@pytest.mark.asyncio
async def test_forged_altered_and_foreign_tokens_are_refused(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path) as hub:
        alice = await hub.client.ws_connect(WS)
        alice_welcome, _ = await hello(alice)
        await alice.send_json({"type": "message", "client_id": "a1", "text": "my address is 1 Secret Lane"})
        await receive_until(alice, "ack")

        forged = VisitorTokens(["not-the-hub-secret"], max_age_seconds=60).issue(
            VisitorClaims(alice_welcome["visitor_id"])
        )
        _, stamp, signature = alice_welcome["token"].split(".")
        altered = VisitorTokens(["x"], max_age_seconds=60).issue(VisitorClaims("v_mallory")).split(".")[0]
        for token in (forged, f"{altered}.{stamp}.{signature}", "garbage", "a" * 5000):
            mallory = await hub.client.ws_connect(WS)
            await mallory.send_json({"type": "resume", "token": token})
            error = await receive(mallory)
            assert error["type"] == "error" and error["code"] == "invalid_token"
            closing = await mallory.receive(timeout=5)
            assert closing.type == WSMsgType.CLOSE and closing.data == 4401

        # Bob, with his own valid token, cannot read or write Alice's conversation.
        bob = await hub.client.ws_connect(WS)
        _bob_welcome, bob_history = await hello(bob)
        assert bob_history["messages"] == []
        alice_conversation = (await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"][0][
            "id"
        ]
        await bob.send_json({"type": "history", "conversation_id": alice_conversation})
        refused = await receive(bob)
        assert refused == {"type": "error", "code": "forbidden", "message": "that conversation is not yours"}
        await bob.send_json({"type": "message", "client_id": "a1", "text": "hijack"})
        ack = await receive_until(bob, "ack")
        assert ack["duplicate"] is False  # Alice's client id is namespaced by her visitor id
        assert await timeline_bodies(hub, alice_conversation) == [
            "my address is 1 Secret Lane",
            "Echo: my address is 1 Secret Lane",
        ]
        # Bob's socket is still open after the refusal.
        await bob.send_json({"type": "ping"})
        assert await receive_until(bob, "pong") == {"type": "pong"}


@pytest.mark.asyncio
async def test_rotated_secret_still_verifies_and_new_tokens_use_the_first(database_url: str, tmp_path: Path) -> None:
    old_token = VisitorTokens(["old-secret"], max_age_seconds=60).issue(VisitorClaims("v_returning"))
    async with running_hub(database_url, tmp_path, echo=False, webchat_secrets="new-secret, old-secret") as hub:
        ws = await hub.client.ws_connect(WS)
        welcome, _ = await hello(ws, token=old_token)
        assert welcome["visitor_id"] == "v_returning"
        assert VisitorTokens(["new-secret"], max_age_seconds=60).verify(welcome["token"]).visitor_id == "v_returning"


@pytest.mark.asyncio
async def test_origins_outside_the_allow_list_are_refused(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        base = f"http://127.0.0.1:{hub.client.server.port}"
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base + WS, headers={"Origin": "https://evil.example"})
            assert refused.value.status == 403
            # The hub's own pages (the demo) are same-origin and allowed by default.
            same = await session.ws_connect(base + WS, headers={"Origin": base})
            await same.close()

    async with running_hub(
        database_url, tmp_path, echo=False, webchat_allowed_origins="https://shop.example, https://www.shop.example"
    ) as hub:
        base = f"http://127.0.0.1:{hub.client.server.port}"
        async with aiohttp.ClientSession() as session:
            allowed = await session.ws_connect(base + WS, headers={"Origin": "https://www.shop.example"})
            await allowed.close()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base + WS, headers={"Origin": "https://shop.example.evil.test"})
            assert refused.value.status == 403


@pytest.mark.asyncio
async def test_bad_frames_get_error_frames_and_the_socket_stays_open(database_url: str, tmp_path: Path) -> None:
    async with running_hub(
        database_url, tmp_path, echo=False, webchat_max_message_chars=100, webchat_max_frame_bytes=2048
    ) as hub:
        ws = await hub.client.ws_connect(WS)
        await ws.send_json({"type": "message", "client_id": "early", "text": "hi"})
        assert (await receive(ws))["code"] == "not_ready"
        await hello(ws)
        cases: list[tuple[Any, str]] = [
            ("{not json", "invalid_json"),
            ("[1, 2]", "invalid_frame"),
            (json.dumps({"type": "dance"}), "unknown_type"),
            (json.dumps({"type": "message", "client_id": "big", "text": "x" * 101}), "too_large"),
            (json.dumps({"type": "message", "client_id": "huge", "text": "x" * 3000}), "too_large"),
            (json.dumps({"type": "message", "client_id": "bad id!", "text": "hi"}), "invalid_input"),
            (json.dumps({"type": "message", "client_id": "empty", "text": "   "}), "invalid_input"),
            (
                json.dumps({"type": "message", "client_id": "c", "text": "hi", "contact": {"email": "nope"}}),
                "invalid_input",
            ),
            # The hub's one e-mail check (hub.inputs.check_email): no name, no real domain.
            (
                json.dumps(
                    {"type": "message", "client_id": "c", "text": "hi", "contact": {"email": "a..b@example.com"}}
                ),
                "invalid_input",
            ),
            (
                json.dumps(
                    {"type": "message", "client_id": "c", "text": "hi", "contact": {"email": "ada@-example.com"}}
                ),
                "invalid_input",
            ),
            (json.dumps({"type": "history", "limit": 10_000}), "invalid_frame"),
        ]
        for raw, code in cases:
            await ws.send_str(raw)
            error = await receive(ws)
            assert error["type"] == "error" and error["code"] == code, (raw[:60], error)
        await ws.send_bytes(b"\x00\x01")
        assert (await receive(ws))["code"] == "invalid_frame"
        await ws.send_json({"type": "message", "client_id": "ok", "text": "still here"})
        assert (await receive_until(ws, "ack"))["message"]["text"] == "still here"
        assert not ws.closed


@pytest.mark.asyncio
async def test_rate_limit_answers_with_error_frame_and_keeps_the_socket(database_url: str, tmp_path: Path) -> None:
    # One token every 5 s: the five messages' round trips (a database write each) stay well inside
    # it on a loaded machine; at one a second a slow PostgreSQL write let a token back in.
    async with running_hub(
        database_url, tmp_path, echo=False, webchat_session_rate=0.2, webchat_session_burst=3
    ) as hub:
        ws = await hub.client.ws_connect(WS)
        await hello(ws)
        outcomes = []
        for n in range(5):
            await ws.send_json({"type": "message", "client_id": f"r{n}", "text": f"spam {n}"})
            outcomes.append(await receive(ws))
        kinds = [o["type"] if o["type"] == "ack" else o["code"] for o in outcomes]
        assert kinds == ["ack", "ack", "ack", "rate_limited", "rate_limited"]
        limited = outcomes[3]
        assert limited["ref"] == "r3" and 0 < limited["retry_after"] <= 5.0
        await asyncio.sleep(limited["retry_after"] + 0.05)
        await ws.send_json({"type": "message", "client_id": "r3", "text": "spam 3"})
        assert (await receive(ws))["type"] == "ack"
        assert not ws.closed

    # Per IP: many visitors from one address share a bucket (connections count too).
    async with running_hub(database_url, tmp_path, echo=False, webchat_ip_rate=0.5, webchat_ip_burst=4) as hub:
        first = await hub.client.ws_connect(WS)
        await hello(first)  # connection + hello: 2 tokens
        second = await hub.client.ws_connect(WS)  # 3
        await second.send_json({"type": "hello"})  # 4
        await receive_until(second, "history")
        await second.send_json({"type": "history"})
        error = await receive(second)
        # One token at 0.5 a second: up to 2 s away (less as time passes since the bucket emptied).
        assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= 2.0
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await hub.client.ws_connect(WS)
        assert refused.value.status == 429
        await second.send_json({"type": "ping"})
        assert await receive(second) == {"type": "pong"}


@pytest.mark.asyncio
async def test_silent_socket_is_closed_after_the_hello_timeout(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False, webchat_hello_timeout=0.3) as hub:
        ws = await hub.client.ws_connect(WS)
        closing = await ws.receive(timeout=5)
        assert closing.type == WSMsgType.CLOSE and closing.data == 4408


@pytest.mark.asyncio
async def test_verified_identity_links_the_contact_and_follows_the_user(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        user = {
            "user_id": "cust-42",
            "email": "Ada@Example.com",
            "name": "Ada",
            "user_hash": user_hash(IDENTITY_SECRET, "cust-42"),
        }
        laptop = await hub.client.ws_connect(WS)
        welcome, _ = await hello(laptop, user=user)
        assert welcome["identity"] == "verified"
        await laptop.send_json({"type": "message", "client_id": "l1", "text": "from my laptop"})
        ack = await receive_until(laptop, "ack")
        message = await hub.api("GET", f"/api/v1/messages/{ack['message']['id']}")
        contact = await hub.api("GET", f"/api/v1/contacts/{message['contact_id']}")
        assert contact["email"] == "ada@example.com" and contact["name"] == "Ada"

        # Another device, no token: the same verified user gets the same conversation.
        phone = await hub.client.ws_connect(WS)
        welcome2, history = await hello(phone, user=user)
        assert welcome2["visitor_id"] == welcome["visitor_id"]
        assert [m["text"] for m in history["messages"]] == ["from my laptop"]

        # A wrong hash is refused: anonymous, with a fresh visitor id.
        forger = await hub.client.ws_connect(WS)
        await forger.send_json({"type": "hello", "user": {**user, "user_hash": "0" * 64}})
        rejected = await receive(forger)
        assert rejected["code"] == "identity_rejected"
        welcome3 = await receive(forger)
        assert welcome3["identity"] == "anonymous" and welcome3["visitor_id"] != welcome["visitor_id"]
        assert (await receive(forger))["messages"] == []

        # A token of the verified user is useless once the page has no (or another) user.
        logged_out = await hub.client.ws_connect(WS)
        welcome4, history4 = await hello(logged_out, token=welcome2["token"])
        assert welcome4["visitor_id"] != welcome["visitor_id"] and history4["messages"] == []


@pytest.mark.asyncio
async def test_prechat_details_are_kept_as_unverified_hints(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        ws = await hub.client.ws_connect(WS)
        await hello(ws)
        await ws.send_json(
            {
                "type": "message",
                "client_id": "p1",
                "text": "hello",
                "contact": {"name": "Grace Hopper", "email": "grace@example.com"},
            }
        )
        ack = await receive_until(ws, "ack")
        message = await hub.api("GET", f"/api/v1/messages/{ack['message']['id']}")
        contact = await hub.api("GET", f"/api/v1/contacts/{message['contact_id']}")
        assert contact["name"] == "Grace Hopper"
        assert contact["email"] is None and contact["attributes"]["email_unverified"] == "grace@example.com"


@pytest.mark.asyncio
async def test_send_pushes_to_every_open_socket_and_succeeds_offline(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        channel = hub.channel("webchat")
        tab1 = await hub.client.ws_connect(WS)
        welcome, _ = await hello(tab1)
        tab2 = await hub.client.ws_connect(WS)
        await hello(tab2, token=welcome["token"])
        await tab1.send_json({"type": "message", "client_id": "t1", "text": "from tab one"})
        await receive_until(tab1, "ack")
        mirrored = await receive_until(tab2, "message")  # the other tab shows it too
        assert mirrored["message"]["text"] == "from tab one" and mirrored["message"]["client_id"] == "t1"
        stored = await hub.api("GET", f"/api/v1/messages/{mirrored['message']['id']}")
        conversation_id = stored["conversation_id"]

        reply = await hub.api(
            "POST",
            f"/api/v1/conversations/{conversation_id}/messages",
            role="agent",
            json={"text": "An agent here"},
            expect=201,
        )
        for tab in (tab1, tab2):
            pushed = await receive_until(tab, "message")
            assert pushed["message"] == {
                "id": reply["id"],
                "author": "agent",
                "text": "An agent here",
                "created_at": None,
                "client_id": None,
            }
        await wait_for(lambda: _delivery(hub, reply["id"], "delivered"))

        await tab1.close()
        await tab2.close()
        await wait_for(lambda: channel.visitor_sockets(welcome["visitor_id"]) == 0)
        result = await channel.send(
            OutboundMessage(
                message_id=reply["id"],
                conversation_id=conversation_id,
                channel="webchat",
                to=welcome["visitor_id"],
                text="later",
                idempotency_key="k",
            )
        )
        assert result.delivered is False and result.provider_id == f"webchat-{reply['id']}"


@pytest.mark.asyncio
async def test_offline_mode_when_no_agent_is_on_duty(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        channel = hub.channel("webchat")
        ws = await hub.client.ws_connect(WS)
        welcome, _ = await hello(ws)
        assert welcome["agents_online"] is True
        await channel.notify_handoff(welcome["visitor_id"])  # agents online: nothing to say

        async def nobody_on_duty() -> bool:
            return False

        channel.agents_online = nobody_on_duty
        await channel.send(
            OutboundMessage(
                message_id=999,
                conversation_id=1,
                channel="webchat",
                to=welcome["visitor_id"],
                text="Let me get a human for you.",
                idempotency_key="h",
                metadata={"handoff": True, "author_kind": "bot"},
            )
        )
        assert (await receive(ws))["message"]["text"] == "Let me get a human for you."
        offline = await receive(ws)
        # No second "away" note: the handoff message itself says what the team promises.
        assert offline == {"type": "offline"}
        ws2 = await hub.client.ws_connect(WS)
        welcome2, _ = await hello(ws2, token=welcome["token"])
        assert welcome2["agents_online"] is False


@pytest.mark.asyncio
async def test_typing_and_read_frames(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        channel = hub.channel("webchat")
        seen: list[tuple[str, bool]] = []
        channel.on_visitor_typing = lambda visitor, active: seen.append((visitor, active))
        tab1 = await hub.client.ws_connect(WS)
        welcome, _ = await hello(tab1)
        tab2 = await hub.client.ws_connect(WS)
        await hello(tab2, token=welcome["token"])
        await tab1.send_json({"type": "typing", "active": True})
        await tab1.send_json({"type": "read", "last_id": 7})
        assert await receive(tab2) == {"type": "read", "last_id": 7}
        assert seen == [(welcome["visitor_id"], True)]
        assert await channel.push_typing(welcome["visitor_id"], True) is True
        assert await receive(tab1) == {"type": "typing", "author": "agent", "active": True}


@pytest.mark.asyncio
async def test_shutdown_closes_open_sockets_with_going_away(database_url: str, tmp_path: Path) -> None:
    from tests.conftest import start_hub

    hub = await start_hub(webchat_settings(database_url, tmp_path))
    channel = hub.channel("webchat")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"http://127.0.0.1:{hub.client.server.port}{WS}")
        await hello(ws)
        started = time.monotonic()
        await channel.on_shutdown(hub.app)  # app.on_shutdown, once hub/app.py wires it
        closing = await ws.receive(timeout=5)
        assert closing.type == WSMsgType.CLOSE and closing.data == 1001
        await hub.client.close()
        assert time.monotonic() - started < 5
    assert channel.open_sockets == 0
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name() == "webchat-prune")
    assert not channel._tasks


@pytest.mark.asyncio
async def test_install_echo_bot_replies_through_the_outbox(database_url: str, tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.echo import ECHO_BOT, install_echo_bot
    from hub import keys
    from hub.app import create_app

    app = create_app(webchat_settings(database_url, tmp_path))
    install_echo_bot(app)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        ws = await client.ws_connect(WS)
        await hello(ws)
        await ws.send_json({"type": "message", "client_id": "e1", "text": "ping?"})
        echoed = await receive_until(ws, "message")
        assert echoed["message"]["text"] == "Echo: ping?" and echoed["message"]["author"] == "bot"
        assert app[ECHO_BOT].replied == 1
        await ws.close()
    finally:
        await app[keys.CHANNELS]["webchat"].on_shutdown(app)
        await client.close()


def test_missing_secret_is_a_config_error(tmp_path: Path) -> None:
    from channels.webchat import WebchatChannel
    from hub.errors import ConfigError

    settings = webchat_settings("sqlite:///unused.db", tmp_path, webchat_secrets=None)
    with pytest.raises(ConfigError, match="HUB_WEBCHAT_SECRETS"):
        WebchatChannel.from_settings(settings)


def test_token_bucket_refills_and_limiter_prunes_idle_buckets() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])
    assert bucket.take() == 0 and bucket.take() == 0
    assert bucket.take() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.take() == 0
    limiter = RateLimiter(clock=lambda: now[0])
    rule = TokenBuckets(rate=1.0, burst=1)
    limiter.take(rule, "a")
    limiter.take(rule, "b")
    now[0] = 10.0
    assert limiter.prune() == 2 and len(limiter) == 0


def test_expired_token_is_refused() -> None:
    from hub.errors import InvalidSignature

    tokens = VisitorTokens([SECRET], max_age_seconds=-1)
    with pytest.raises(InvalidSignature):
        tokens.verify(tokens.issue(VisitorClaims("v_old")))


@pytest.mark.asyncio
async def test_one_address_holds_at_most_its_ceiling_of_open_sockets(database_url: str, tmp_path: Path) -> None:
    """Opened slowly enough for the connection rate, sockets that never close
    stop at HUB_WEBCHAT_MAX_SOCKETS_PER_IP; a closed one makes room again."""
    async with running_hub(database_url, tmp_path, echo=False, webchat_max_sockets_per_ip=3) as hub:
        open_ = [await hub.client.ws_connect(WS) for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await hub.client.ws_connect(WS)
        assert refused.value.status == 429
        assert refused.value.headers is not None and int(refused.value.headers["Retry-After"]) >= 1
        channel = hub.channel("webchat")
        assert channel.open_sockets == 3
        await open_[0].close()
        await wait_for(lambda: channel.open_sockets == 2)
        again = await hub.client.ws_connect(WS)
        assert not again.closed
        for ws in [*open_[1:], again]:
            await ws.close()
        await wait_for(lambda: channel.open_sockets == 0)
        assert channel._by_ip == {}


def test_choices_are_a_clarifying_questions_titles_only() -> None:
    from channels.webchat.frames import CHOICE_MAX, CHOICES_MAX, choices_of

    offered = [{"title": "Refunds", "article_id": "refunds"}, {"title": " Delivery ", "article_id": "d"}]
    assert choices_of({"decision": {"action": "clarify", "offered": offered}}) == ["Refunds", "Delivery"]
    # An answer, a list of topics, a malformed or missing decision: no buttons.
    assert choices_of({"decision": {"action": "answer", "offered": offered}}) == []
    assert choices_of({"decision": {"action": "topics"}}) == []
    assert choices_of({"decision": {"action": "clarify", "offered": "Refunds"}}) == []
    assert choices_of({"decision": "clarify"}) == []
    assert choices_of({}) == []
    odd = [{"title": 7}, "Refunds", {"title": ""}, {"title": "x" * (CHOICE_MAX + 50)}, *offered * 3]
    found = choices_of({"decision": {"action": "clarify", "offered": odd}})
    assert found[0] == "x" * CHOICE_MAX and len(found) == CHOICES_MAX


@pytest.mark.asyncio
async def test_a_clarifying_question_carries_its_choices_live_and_in_the_history(
    database_url: str, tmp_path: Path
) -> None:
    from hub.models import AuthorKind

    offered = [{"title": "Refunds", "article_id": "refunds"}, {"title": "Delivery", "article_id": "delivery"}]
    async with running_hub(database_url, tmp_path, echo=False) as hub, hub.client.ws_connect(WS) as ws:
        welcome, _ = await hello(ws)
        await ws.send_json({"type": "message", "client_id": "c1", "text": "the money thing"})
        await receive_until(ws, "ack")
        [conversation] = (await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"]
        meta = {"decision": {"action": "clarify", "confidence": 0.4, "offered": offered}}
        await hub.service.reply(conversation["id"], "Is it about one of these?", author_kind=AuthorKind.BOT, meta=meta)
        live = await receive_until(ws, "message")
        while live["message"]["author"] == "customer":  # its own message, echoed to the visitor's tabs
            live = await receive_until(ws, "message")
        assert live["message"]["text"] == "Is it about one of these?"
        assert live["message"]["choices"] == ["Refunds", "Delivery"]
    async with running_hub(database_url, tmp_path, echo=False) as hub, hub.client.ws_connect(WS) as ws:
        _, history = await hello(ws, token=welcome["token"])
        question = history["messages"][-1]
        assert question["choices"] == ["Refunds", "Delivery"]
        assert "choices" not in history["messages"][0]
