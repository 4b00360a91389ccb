"""The agents' Slack: real slack_sdk + slack-bolt against a loopback Slack Web API,
event and interaction requests signed with Slack's real v0 algorithm."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from tests.conftest import Hub, make_settings, start_hub, wait_for
from tests.fakes.slack_api import (
    BOT_ID,
    FakeSlackApi,
    block_action_body,
    command_body,
    event_body,
    sign_request,
)

SECRET = "test-slack-signing-secret"
AGENT_SLACK = "UAGENT1"
OTHER_SLACK = "UNOTANAGENT"


def slack_settings(database_url: str, tmp_path: Path, api: FakeSlackApi, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "channels": "fake,slack",
        "slack_bot_token": "xoxb-test-token",
        "slack_signing_secret": SECRET,
        "slack_api_url": api.base_url,
        "slack_default_channel": "CSUPPORT",
        "slack_urgent_channel": "CURGENT",
        "slack_team_channels": "billing=CBILLING",
        "slack_jobs_base_delay": 0.05,
        "slack_jobs_max_delay": 0.2,
        "slack_jobs_poll_interval": 0.05,
        "sla_check_interval": 0.05,
    }
    values.update(overrides)
    return make_settings(database_url, tmp_path, **values)


@pytest_asyncio.fixture
async def slack_api() -> AsyncIterator[FakeSlackApi]:
    api = await FakeSlackApi().start()
    try:
        yield api
    finally:
        await api.close()


@pytest_asyncio.fixture
async def slack_hub(database_url: str, tmp_path: Path, slack_api: FakeSlackApi) -> AsyncIterator[Hub]:
    running = await start_hub(slack_settings(database_url, tmp_path, slack_api))
    try:
        yield running
    finally:
        await running.client.close()


async def make_agent(hub: Hub, *, slack_user: str = AGENT_SLACK, role: str = "agent", **profile: Any) -> int:
    me = await hub.api("GET", "/api/v1/me", role=role)
    await hub.api("PATCH", f"/api/v1/agents/{me['id']}", json={"slack_user_id": slack_user, **profile})
    await hub.api("POST", f"/api/v1/agents/{me['id']}/duty", json={"on_duty": True})
    return me["id"]


async def customer_conversation(
    hub: Hub, sender: str = "cust-1", text: str = "My order never arrived", **extra: Any
) -> int:
    received = await hub.inbound(
        {"from": sender, "text": text, "id": f"{sender}-{time.time_ns()}", "name": "Ada", **extra}
    )
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return message["conversation_id"]


async def bot_handoff(
    hub: Hub, conversation_id: int, priority: str = "high", kb_hits: list[dict] | None = None
) -> dict:
    # What the bot bridge does on a handoff: one transaction opens the ticket.
    await hub.tickets.open(
        conversation_id, priority=priority, reason="bot could not answer", source="bot", kb_hits=kb_hits or []
    )
    items = (await hub.api("GET", "/api/v1/tickets"))["items"]
    return next(t for t in items if t["conversation_id"] == conversation_id)


async def posted_card(hub: Hub, api: FakeSlackApi, ticket_id: int) -> dict:
    async def card() -> dict | None:
        ticket = await hub.api("GET", f"/api/v1/tickets/{ticket_id}")
        return ticket if ticket["slack_ts"] else None

    return await wait_for(card)


async def send_signed(hub: Hub, body: bytes, *, content_type: str, secret: str = SECRET, **headers: str) -> Any:
    response = await hub.client.post(
        "/channels/slack/events",
        data=body,
        headers={**sign_request(secret, body), "Content-Type": content_type, **headers},
    )
    return response


async def thread_event(
    hub: Hub, ticket: dict, text: str, *, user: str = AGENT_SLACK, event_id: str | None = None, **extra: Any
) -> Any:
    event = {
        "type": "message",
        "channel": ticket["slack_channel"],
        "user": user,
        "text": text,
        "ts": f"{time.time():.6f}",
        "thread_ts": ticket["slack_ts"],
        **extra,
    }
    body = event_body(event, event_id=event_id or f"Ev{time.time_ns()}")
    return await send_signed(hub, body, content_type="application/json")


def block_text(blocks: list[dict]) -> str:
    return json.dumps(blocks)


# --- tests -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_handoff_posts_ticket_card_to_team_channel(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    conversation_id = await customer_conversation(slack_hub, text="Where is my parcel? It never arrived")
    hits = [{"title": "Shipping times", "url": "https://kb.example.test/shipping"}]
    ticket = await bot_handoff(slack_hub, conversation_id, priority="high", kb_hits=hits)
    assert ticket["priority"] == "high" and ticket["source"] == "bot"
    ticket = await posted_card(slack_hub, slack_api, ticket["id"])
    [post] = [c for c in slack_api.of("chat.postMessage") if "blocks" in c.args]
    assert post.args["channel"] == "CSUPPORT" and ticket["slack_channel"] == "CSUPPORT"
    assert post.token == "xoxb-test-token"
    text = block_text(post.args["blocks"])
    for expected in (
        f"Ticket #{ticket['id']}",
        "HIGH",
        "Ada",
        "*Channel*\\nfake",
        "Shipping times",
        "Where is my parcel? It never arrived",
        "<!date^",
        "bot could not answer",
    ):
        assert expected in text, expected
    actions = next(b for b in post.args["blocks"] if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [
        "ticket_claim",
        "ticket_resolve",
        "ticket_priority",
        "ticket_snooze",
    ]
    conversation = await slack_hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    assert conversation["handler"] == "human" and conversation["priority"] == "high"

    # An urgent ticket goes to the urgent channel.
    urgent_conversation = await customer_conversation(slack_hub, sender="cust-2", text="Site is down!")
    urgent = await bot_handoff(slack_hub, urgent_conversation, priority="urgent")
    urgent = await posted_card(slack_hub, slack_api, urgent["id"])
    assert urgent["slack_channel"] == "CURGENT"
    # Born urgent, its card is already in the urgent channel: no escalation notice.
    assert slack_api.of("chat.getPermalink") == []


@pytest.mark.asyncio
async def test_agent_thread_reply_reaches_customer_notes_stay_internal(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    agent_id = await make_agent(slack_hub)
    conversation_id = await customer_conversation(slack_hub, sender="cust-3")
    ticket = await bot_handoff(slack_hub, conversation_id)
    ticket = await posted_card(slack_hub, slack_api, ticket["id"])
    assert ticket["assignee_id"] == agent_id  # routed to the only agent on duty

    response = await thread_event(slack_hub, ticket, "Hi Ada, I'm looking into it now.")
    assert response.status == 200
    recorder = slack_hub.channel("fake").recorder
    await wait_for(lambda: any(m.text == "Hi Ada, I'm looking into it now." for m in recorder.sent))
    sent = next(m for m in recorder.sent if m.text.startswith("Hi Ada"))
    assert sent.to == "cust-3"

    await thread_event(slack_hub, ticket, "// customer sounds upset, check the warehouse")
    await wait_for(lambda: _has_note(slack_hub, conversation_id, "customer sounds upset, check the warehouse"))
    assert not any("upset" in m.text for m in recorder.sent)

    # A Slack user who is not an agent cannot answer the customer.
    await thread_event(slack_hub, ticket, "let me answer too", user="UNOTANAGENT")
    await wait_for(lambda: any(c.args.get("user") == "UNOTANAGENT" for c in slack_api.of("chat.postEphemeral")))
    # The app's own (and any bot's) messages are ignored: no loops.
    await thread_event(slack_hub, ticket, "mirror of something", user="UHUBBOT", bot_id=BOT_ID)
    # The customer writes again: mirrored into the ticket's thread.
    await slack_hub.inbound({"from": "cust-3", "text": "Thanks, any news?", "id": "cust-3-again"})
    await wait_for(
        lambda: any(
            c.args.get("thread_ts") == ticket["slack_ts"] and "any news?" in c.args.get("text", "")
            for c in slack_api.of("chat.postMessage")
        )
    )
    await asyncio.sleep(0.3)
    assert [m.text for m in recorder.sent] == ["Hi Ada, I'm looking into it now."]
    # The agent's own Slack reply is not echoed back into the thread.
    assert not any("looking into it" in c.args.get("text", "") for c in slack_api.of("chat.postMessage"))


async def _has_note(hub: Hub, conversation_id: int, text: str) -> bool:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    return any(m["kind"] == "note" and m["body"] == text for m in page["items"])


@pytest.mark.asyncio
async def test_claim_and_resolve_buttons_update_ticket_and_message(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    agent_id = await make_agent(slack_hub)
    await slack_hub.api("POST", f"/api/v1/agents/{agent_id}/duty", json={"on_duty": False})
    conversation_id = await customer_conversation(slack_hub, sender="cust-4")
    ticket = await bot_handoff(slack_hub, conversation_id, priority="normal")
    ticket = await posted_card(slack_hub, slack_api, ticket["id"])
    assert ticket["assignee_id"] is None  # nobody on duty: it waits in the queue
    queue = await slack_hub.api("GET", "/api/v1/tickets/queue", role="agent")
    assert [t["id"] for t in queue["items"]] == [ticket["id"]]

    # Someone who is not an agent presses Claim: an ephemeral error, nothing changes.
    body = block_action_body(
        user=OTHER_SLACK,
        channel=ticket["slack_channel"],
        message_ts=ticket["slack_ts"],
        action_id="ticket_claim",
        value=str(ticket["id"]),
    )
    assert (await send_signed(slack_hub, body, content_type="application/x-www-form-urlencoded")).status == 200
    await wait_for(lambda: any(c.args.get("user") == OTHER_SLACK for c in slack_api.of("chat.postEphemeral")))
    assert (await slack_hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["assignee_id"] is None

    body = block_action_body(
        user=AGENT_SLACK,
        channel=ticket["slack_channel"],
        message_ts=ticket["slack_ts"],
        action_id="ticket_claim",
        value=str(ticket["id"]),
    )
    response = await send_signed(slack_hub, body, content_type="application/x-www-form-urlencoded")
    assert response.status == 200
    await wait_for(lambda: _ticket_field(slack_hub, ticket["id"], "assignee_id", agent_id))
    conversation = await slack_hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    assert conversation["assignee_id"] == agent_id
    await wait_for(
        lambda: any(f"<@{AGENT_SLACK}>" in block_text(c.args.get("blocks", [])) for c in slack_api.of("chat.update"))
    )
    update = slack_api.of("chat.update")[-1]
    assert update.args["ts"] == ticket["slack_ts"] and update.args["channel"] == ticket["slack_channel"]

    body = block_action_body(
        user=AGENT_SLACK,
        channel=ticket["slack_channel"],
        message_ts=ticket["slack_ts"],
        action_id="ticket_priority",
        value=f"{ticket['id']}:urgent",
        selected=True,
    )
    await send_signed(slack_hub, body, content_type="application/x-www-form-urlencoded")
    await wait_for(lambda: _ticket_field(slack_hub, ticket["id"], "priority", "urgent"))

    # Now urgent: the card stays in the team channel with its thread, and the
    # urgent channel gets a notice linking to it.
    def escalation_notices() -> list[Any]:
        return [
            c
            for c in slack_api.of("chat.postMessage")
            if c.args.get("channel") == "CURGENT" and "is now *urgent*" in c.args.get("text", "")
        ]

    await wait_for(lambda: len(escalation_notices()) == 1)
    [permalink] = slack_api.of("chat.getPermalink")
    assert permalink.args == {"channel": ticket["slack_channel"], "message_ts": ticket["slack_ts"]}
    notice = escalation_notices()[0].args["text"]
    assert f"Ticket #{ticket['id']}" in notice
    assert (
        f"https://fake.slack.test/archives/{ticket['slack_channel']}/p{ticket['slack_ts'].replace('.', '')}" in notice
    )
    assert (await slack_hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["slack_channel"] == "CSUPPORT"

    body = block_action_body(
        user=AGENT_SLACK,
        channel=ticket["slack_channel"],
        message_ts=ticket["slack_ts"],
        action_id="ticket_resolve",
        value=str(ticket["id"]),
    )
    await send_signed(slack_hub, body, content_type="application/x-www-form-urlencoded")
    await wait_for(lambda: _ticket_field(slack_hub, ticket["id"], "status", "resolved"))
    conversation = await slack_hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    assert conversation["status"] == "resolved"

    def resolved_card(call: Any) -> bool:
        blocks = call.args.get("blocks", [])
        return bool(blocks) and "Resolved" in blocks[0]["text"]["text"]

    await wait_for(lambda: any(resolved_card(c) for c in slack_api.of("chat.update")))
    for call in slack_api.of("chat.update"):
        if resolved_card(call):  # a resolved card never offers the buttons again
            assert not any(b["type"] == "actions" for b in call.args["blocks"])
    agent = await slack_hub.api("GET", f"/api/v1/agents/{agent_id}", role="agent")
    assert agent["open_tickets"] == 0


async def _ticket_field(hub: Hub, ticket_id: int, name: str, wanted: Any) -> bool:
    return (await hub.api("GET", f"/api/v1/tickets/{ticket_id}"))[name] == wanted


@pytest.mark.asyncio
async def test_forged_or_stale_signature_gets_401_and_nothing_is_stored(
    slack_hub: Hub, slack_api: FakeSlackApi
) -> None:
    from hub.storage.schema import messages, slack_events

    await make_agent(slack_hub)
    conversation_id = await customer_conversation(slack_hub, sender="cust-5")
    ticket = await posted_card(slack_hub, slack_api, (await bot_handoff(slack_hub, conversation_id))["id"])
    event = {
        "type": "message",
        "channel": ticket["slack_channel"],
        "user": AGENT_SLACK,
        "text": "forged reply",
        "ts": "1.1",
        "thread_ts": ticket["slack_ts"],
    }
    body = event_body(event, event_id="EvForged")
    forged = await send_signed(slack_hub, body, content_type="application/json", secret="not-the-secret")
    assert forged.status == 401
    stale_headers = sign_request(SECRET, body, timestamp=int(time.time()) - 6 * 60)
    stale = await slack_hub.client.post(
        "/channels/slack/events", data=body, headers={**stale_headers, "Content-Type": "application/json"}
    )
    assert stale.status == 401
    unsigned = await slack_hub.client.post(
        "/channels/slack/events", data=body, headers={"Content-Type": "application/json"}
    )
    assert unsigned.status == 401
    action = block_action_body(
        user=AGENT_SLACK,
        channel=ticket["slack_channel"],
        message_ts=ticket["slack_ts"],
        action_id="ticket_resolve",
        value=str(ticket["id"]),
    )
    assert (
        await send_signed(slack_hub, action, content_type="application/x-www-form-urlencoded", secret="nope")
    ).status == 401
    await asyncio.sleep(0.3)

    def stored(conn: sa.Connection) -> tuple[int, int]:
        events = conn.execute(sa.select(sa.func.count()).select_from(slack_events)).scalar_one()
        forged_messages = conn.execute(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.body == "forged reply")
        ).scalar_one()
        return events, forged_messages

    assert await slack_hub.db.read(stored) == (0, 0)
    assert slack_hub.channel("fake").recorder.sent == []
    assert (await slack_hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["status"] == "open"


@pytest.mark.asyncio
async def test_url_verification_challenge(slack_hub: Hub) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"}).encode()
    response = await send_signed(slack_hub, body, content_type="application/json")
    assert response.status == 200
    assert "abc123" in await response.text()


@pytest.mark.asyncio
async def test_retried_event_is_processed_once(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    await make_agent(slack_hub)
    conversation_id = await customer_conversation(slack_hub, sender="cust-6")
    ticket = await posted_card(slack_hub, slack_api, (await bot_handoff(slack_hub, conversation_id))["id"])
    event = {
        "type": "message",
        "channel": ticket["slack_channel"],
        "user": AGENT_SLACK,
        "text": "Once only, please",
        "ts": "1700000999.000200",
        "thread_ts": ticket["slack_ts"],
    }
    body = event_body(event, event_id="EvRetried1")
    first = await send_signed(slack_hub, body, content_type="application/json")
    assert first.status == 200
    retries = await asyncio.gather(
        *(
            send_signed(
                slack_hub,
                body,
                content_type="application/json",
                **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"},
            )
            for n in (1, 2, 3)
        )
    )
    assert all(r.status == 200 for r in retries)
    recorder = slack_hub.channel("fake").recorder
    await wait_for(lambda: len(recorder.sent) >= 1)
    await asyncio.sleep(0.4)
    assert [m.text for m in recorder.sent] == ["Once only, please"]
    page = await slack_hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    assert [m["body"] for m in page["items"] if m["author_kind"] == "agent" and m["kind"] == "message"] == [
        "Once only, please"
    ]


@pytest.mark.asyncio
async def test_slack_429_is_retried_after_retry_after_and_5xx_retried(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    slack_api.fail("chat.postMessage", 429, retry_after=1)
    slack_api.fail("chat.postMessage", 503)
    conversation_id = await customer_conversation(slack_hub, sender="cust-7")
    started = time.monotonic()
    ticket = await bot_handoff(slack_hub, conversation_id)
    ticket = await posted_card(slack_hub, slack_api, ticket["id"])
    posts = [c for c in slack_api.of("chat.postMessage") if "blocks" in c.args]
    assert len(posts) == 3  # 429, 503, then the post that went through
    assert time.monotonic() - started >= 0.95  # waited for Retry-After

    async def post_job() -> dict | None:
        jobs = await slack_hub.api("GET", "/api/v1/jobs", params={"queue": "slack"})
        job = next(j for j in jobs["items"] if j["kind"] == "post_ticket")
        return job if job["status"] == "done" else None

    assert (await wait_for(post_job))["attempts"] == 3


@pytest.mark.asyncio
async def test_slack_permanent_error_dead_letters_and_can_be_retried(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    slack_api.fail("chat.postMessage", 400)  # e.g. channel_not_found: not worth retrying
    conversation_id = await customer_conversation(slack_hub, sender="cust-8")
    ticket = await bot_handoff(slack_hub, conversation_id)

    async def dead() -> dict | None:
        jobs = await slack_hub.api("GET", "/api/v1/jobs", params={"queue": "slack", "status": "dead"})
        return jobs["items"][0] if jobs["items"] else None

    job = await wait_for(dead)
    await slack_hub.api("POST", f"/api/v1/jobs/slack/{job['id']}/retry")
    await posted_card(slack_hub, slack_api, ticket["id"])


@pytest.mark.asyncio
async def test_hub_slash_command(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    from hub import keys

    agent_id = await make_agent(slack_hub)
    await slack_hub.api("POST", f"/api/v1/agents/{agent_id}/duty", json={"on_duty": False})
    conversation_id = await customer_conversation(slack_hub, sender="+14155550123", text="I need help with my bill")
    await bot_handoff(slack_hub, conversation_id)

    async def command(text: str, user: str = AGENT_SLACK) -> str:
        before = len(slack_api.of("chat.postEphemeral"))
        response = await send_signed(
            slack_hub,
            command_body(user=user, channel="CSUPPORT", text=text),
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status == 200
        await wait_for(lambda: len(slack_api.of("chat.postEphemeral")) > before)
        return slack_api.of("chat.postEphemeral")[-1].args["text"]

    assert "1 unassigned ticket" in await command("queue")
    assert "You are on duty (1 open ticket" in await command("duty on")
    assert "The queue is empty." in await command("queue")
    assert "not connected" in await command("search refund")

    async def stand_in(query: str, limit: int) -> list[dict]:
        return [{"title": f"Refunds ({query})", "url": "https://kb.example.test/refunds"}][:limit]

    slack_hub.app[keys.SLACK_DESK].use_kb_search(stand_in)
    assert "<https://kb.example.test/refunds|Refunds (refund policy)>" in await command("search refund policy")

    class Hit:  # the shape of knowledge_base.models.SearchResult: relative article URLs
        def to_dict(self) -> dict:
            return {"title": "Returns", "url": "/kb/help/returns"}

    class Result:
        hits = [Hit()]

    async def kb_like(query: str, limit: int) -> Result:
        return Result()

    slack_hub.app[keys.SLACK_DESK].use_kb_search(kb_like)
    assert "<http://127.0.0.1:8080/kb/help/returns|Returns>" in await command("search returns")
    summary = await command("contact cust@nowhere.test")
    assert "No contact" in summary
    assert "Only Servicehub agents" in await command("queue", user=OTHER_SLACK)
    assert "You are off duty" in await command("duty off")


@pytest.mark.asyncio
async def test_contact_command_shows_unified_timeline(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    await make_agent(slack_hub)
    await slack_hub.inbound(
        {
            "from": "visitor-9",
            "text": "Hello from the widget",
            "id": "v9-1",
            "name": "Grace",
            "hints": {"email": "grace@example.test"},
            "hints_verified": True,
        }
    )
    response = await send_signed(
        slack_hub,
        command_body(user=AGENT_SLACK, channel="CSUPPORT", text="contact grace@example.test"),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status == 200
    await wait_for(lambda: slack_api.of("chat.postEphemeral"))
    text = slack_api.of("chat.postEphemeral")[-1].args["text"]
    assert "Grace" in text and "Hello from the widget" in text and "grace@example.test" in text


@pytest.mark.asyncio
async def test_shutdown_leaves_no_slack_tasks(database_url: str, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    before = {t for t in asyncio.all_tasks()}
    hub = await start_hub(slack_settings(database_url, tmp_path, slack_api))
    conversation_id = await customer_conversation(hub, sender="cust-10")
    await bot_handoff(hub, conversation_id)
    await hub.client.close()
    await asyncio.sleep(0.05)
    leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert leftover == [], leftover


@pytest.mark.asyncio
async def test_slack_outage_across_restart_loses_nothing(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    settings = slack_settings(database_url, tmp_path, slack_api, slack_jobs_base_delay=5.0, slack_jobs_max_delay=5.0)
    slack_api.fail("chat.postMessage", 502, times=100)  # Slack is down
    first = await start_hub(settings)
    try:
        conversation_id = await customer_conversation(first, sender="cust-11")
        ticket = await bot_handoff(first, conversation_id)
        await wait_for(lambda: slack_api.of("chat.postMessage"))
        await first.inbound({"from": "cust-11", "text": "hello? anyone?", "id": "cust-11-2"})
    finally:
        await first.client.close()  # the hub stops with the card and the mirror still queued
    slack_api.failures.clear()  # Slack is back
    calls_before = len(slack_api.calls)
    second = await start_hub(settings)
    try:
        jobs = await second.api("GET", "/api/v1/jobs", params={"queue": "slack"})
        waiting = {j["kind"] for j in jobs["items"] if j["status"] in ("pending", "sending")}
        assert waiting >= {"post_ticket", "thread"}, jobs["items"]
        # The jobs kept their 5 s backoff from the outage, and one cut off
        # mid-call by the shutdown keeps its lease: bring them all due now.
        await second.db.write(
            lambda conn: conn.execute(
                sa.text(
                    "UPDATE slack_jobs SET status = 'pending', lease_until = NULL, next_attempt_at = created_at "
                    "WHERE status IN ('pending', 'sending')"
                )
            )
        )
        card = await posted_card(second, slack_api, ticket["id"])
        await wait_for(
            lambda: any(
                c.args.get("thread_ts") == card["slack_ts"] and "anyone?" in c.args.get("text", "")
                for c in slack_api.of("chat.postMessage")
            )
        )
        posts = [c for c in slack_api.calls[calls_before:] if c.method == "chat.postMessage" and "blocks" in c.args]
        assert len(posts) == 1 and posts[0].args["channel"] == "CSUPPORT"
    finally:
        await second.client.close()


@pytest.mark.asyncio
async def test_replies_from_the_api_are_mirrored_into_the_thread(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    await make_agent(slack_hub)
    conversation_id = await customer_conversation(slack_hub, sender="cust-12")
    ticket = await posted_card(slack_hub, slack_api, (await bot_handoff(slack_hub, conversation_id))["id"])
    await slack_hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        role="agent",
        json={"text": "Answered from the web console"},
        expect=201,
    )
    await slack_hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/notes",
        role="agent",
        json={"text": "console note"},
        expect=201,
    )
    await wait_for(
        lambda: any(
            c.args.get("thread_ts") == ticket["slack_ts"] and "Answered from the web console" in c.args.get("text", "")
            for c in slack_api.of("chat.postMessage")
        )
    )
    await wait_for(
        lambda: any(
            c.args.get("thread_ts") == ticket["slack_ts"] and "console note" in c.args.get("text", "")
            for c in slack_api.of("chat.postMessage")
        )
    )
    # The first agent reply stops the first-response clock and refreshes the card.
    answered = await slack_hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
    assert answered["first_response_at"] is not None


@pytest.mark.asyncio
async def test_thread_reply_reaches_a_web_chat_customer(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    from hub import keys
    from tests.channels.test_webchat_support import hello, receive_until, stop_hub, webchat_settings

    settings = webchat_settings(
        database_url,
        tmp_path,
        **{
            k: v
            for k, v in slack_settings(database_url, tmp_path, slack_api).model_dump().items()
            if k.startswith(("slack_", "sla_"))
        },
        channels="webchat,fake,slack",
    )
    hub = await start_hub(settings)
    try:
        agent_id = await make_agent(hub)
        tickets = hub.app[keys.TICKETS]
        assert await tickets.anyone_on_duty() is True
        ws = await hub.client.ws_connect("/channels/webchat/ws")
        _welcome, _ = await hello(ws)
        await ws.send_json({"type": "message", "client_id": "w1", "text": "Can a person help me?"})
        ack = await receive_until(ws, "ack")
        conversation_id = (
            ack["message"].get("conversation_id")
            or (await hub.api("GET", f"/api/v1/messages/{ack['message']['id']}"))["conversation_id"]
        )
        ticket = await posted_card(hub, slack_api, (await bot_handoff(hub, conversation_id))["id"])
        assert ticket["assignee_id"] == agent_id
        await thread_event(hub, ticket, "Hello from Slack, I'm a human")
        frame = await receive_until(ws, "message")
        assert frame["message"]["text"] == "Hello from Slack, I'm a human" and frame["message"]["author"] == "agent"
        await ws.close()
    finally:
        await stop_hub(hub)


@pytest.mark.asyncio
async def test_a_ticket_moved_to_another_team_is_announced_in_its_channel(
    slack_hub: Hub, slack_api: FakeSlackApi
) -> None:
    conversation_id = await customer_conversation(slack_hub, "mover", "I was charged twice")
    ticket = await posted_card(slack_hub, slack_api, (await bot_handoff(slack_hub, conversation_id))["id"])
    assert ticket["slack_channel"] == "CSUPPORT"

    def notices(channel: str) -> list[Any]:
        return [
            c
            for c in slack_api.of("chat.postMessage")
            if c.args.get("channel") == channel and "moved to team" in c.args.get("text", "")
        ]

    await slack_hub.tickets.set_team(ticket["id"], "billing", actor_id=None)
    await wait_for(lambda: len(notices("CBILLING")) == 1)
    text = notices("CBILLING")[0].args["text"]
    assert f"Ticket #{ticket['id']}" in text and "*billing*" in text and "unassigned" in text
    assert f"/archives/CSUPPORT/p{ticket['slack_ts'].replace('.', '')}" in text  # a link to the card
    assert "Ada" not in text and "charged" not in text  # nothing of the customer's: it outlives an erasure
    # The card and its thread stay where they are.
    assert (await slack_hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["slack_channel"] == "CSUPPORT"
    # Back to a team whose channel holds the card: nothing to announce there.
    await slack_hub.tickets.set_team(ticket["id"], "support", actor_id=None)

    def all_done(conn: sa.Connection) -> bool:  # the second move's jobs too
        statuses = conn.execute(sa.text("SELECT status FROM slack_jobs")).scalars().all()
        return all(status == "done" for status in statuses)

    await wait_for(lambda: slack_hub.db.read(all_done))
    assert notices("CSUPPORT") == [] and len(notices("CBILLING")) == 1
