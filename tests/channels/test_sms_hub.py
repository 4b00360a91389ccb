"""SMS through the whole hub: Twilio-signed webhooks in, the real ``twilio``
client out to a fake Twilio API, the Slack desk against a fake Slack API.

Status callbacks move the timeline message; an undelivered text is told to
the agent in the ticket's thread; STOP blocks every later send with the
reason visible, START lifts it, HELP is answered; Twilio's own "unsubscribed"
refusal opts the number out; a send Twilio accepted while the hub lost the
answer is texted once; a burst of 500/429 ends in one text; a customer who
texts and chats with the same verified number is one contact; the ticket's
card shows the number and the agent's thread reply arrives as a text.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from channels.webchat.security import user_hash
from tests.channels.test_slack import AGENT_SLACK, block_text, make_agent, posted_card, thread_event
from tests.channels.test_slack import SECRET as SLACK_SECRET
from tests.channels.test_sms import CUSTOMER, PUBLIC_URL, post_signed, sms_settings, stored
from tests.channels.test_webchat_support import IDENTITY_SECRET, hello, receive_until
from tests.conftest import Hub, close_hub, start_hub, wait_for
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.twilio_api import FakeTwilioApi, inbound_params


@pytest_asyncio.fixture
async def apis() -> AsyncIterator[tuple[FakeTwilioApi, FakeSlackApi]]:
    twilio, slack = await FakeTwilioApi().start(), await FakeSlackApi().start()
    try:
        yield twilio, slack
    finally:
        await twilio.close()
        await slack.close()


def settings_for(database_url: str, tmp_path: Path, twilio: FakeTwilioApi, slack: FakeSlackApi, **extra: Any) -> Any:
    return sms_settings(
        tmp_path,
        database_url,
        channels="sms,slack,webchat",
        twilio_api_url=twilio.base_url,
        twilio_timeout=0.5,
        sms_help_text="Acme support: reply with your question. Msg&data rates may apply. STOP to opt out.",
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SLACK_SECRET,
        slack_api_url=slack.base_url,
        slack_default_channel="CSUPPORT",
        slack_urgent_channel="CURGENT",
        slack_jobs_base_delay=0.05,
        slack_jobs_max_delay=0.2,
        slack_jobs_poll_interval=0.05,
        webchat_secrets="sms-hub-webchat-secret",
        webchat_identity_secret=IDENTITY_SECRET,
        **extra,
    )


@pytest_asyncio.fixture
async def hub(database_url: str, tmp_path: Path, apis: tuple[FakeTwilioApi, FakeSlackApi]) -> AsyncIterator[Hub]:
    running = await start_hub(settings_for(database_url, tmp_path, *apis))
    try:
        yield running
    finally:
        await close_hub(running)


async def text_in(hub: Hub, body: str, *, sender: str = CUSTOMER) -> Any:
    response = await post_signed(hub, inbound_params(sender=sender, body=body))
    assert response.status == 200, await response.text()
    assert "<Response/>" in await response.text()
    return (await stored(hub, address=sender))[-1]


async def reply(hub: Hub, conversation_id: int, text: str) -> int:
    body = await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/messages", role="agent", json={"text": text}, expect=201
    )
    return int(body["id"])


async def message(hub: Hub, message_id: int) -> dict[str, Any]:
    return await hub.api("GET", f"/api/v1/messages/{message_id}")


async def status_is(hub: Hub, message_id: int, wanted: str) -> bool:
    return (await message(hub, message_id))["delivery_status"] == wanted


def texts(twilio: FakeTwilioApi, to: str = CUSTOMER) -> list[str]:
    return [m.body for m in twilio.sent_to(to)]


@pytest.mark.asyncio
async def test_status_callbacks_move_the_message_and_undelivered_reaches_the_agent_in_slack(
    hub: Hub, apis: tuple[FakeTwilioApi, FakeSlackApi]
) -> None:
    twilio, slack = apis
    question = await text_in(hub, "my parcel never came")
    await hub.tickets.open(question.conversation_id, priority="urgent", reason="lost parcel", source="bot")
    [ticket] = [t for t in (await hub.api("GET", "/api/v1/tickets"))["items"]]
    ticket = await posted_card(hub, slack, ticket["id"])
    # The card names the customer by their number, and goes to the urgent channel.
    [card] = [c for c in slack.of("chat.postMessage") if "blocks" in c.args]
    assert CUSTOMER in block_text(card.args["blocks"]) and ticket["slack_channel"] == "CURGENT"

    first = await reply(hub, question.conversation_id, "We are on it.")
    await wait_for(lambda: texts(twilio) == ["We are on it."])
    await wait_for(lambda: status_is(hub, first, "sent"))
    [sent] = twilio.sent_to(CUSTOMER)
    assert (await twilio.post_status(hub.client, sent.sid, "delivered", public_url=PUBLIC_URL)).status == 204
    await wait_for(lambda: status_is(hub, first, "delivered"))
    # A late "sent" does not move it back.
    await twilio.post_status(hub.client, sent.sid, "sent", public_url=PUBLIC_URL)
    assert (await message(hub, first))["delivery_status"] == "delivered"

    second = await reply(hub, question.conversation_id, "Here is the tracking link: https://track.example.com/p/1")
    await wait_for(lambda: len(twilio.sent_to(CUSTOMER)) == 2)
    lost = twilio.sent_to(CUSTOMER)[1]
    await twilio.post_status(hub.client, lost.sid, "undelivered", error_code="30003", public_url=PUBLIC_URL)
    await wait_for(lambda: status_is(hub, second, "undelivered"))
    error = (await message(hub, second))["delivery_error"]
    assert error.startswith("30003")

    def told_in_thread() -> bool:
        return any(
            "not delivered" in str(c.args.get("text", "")) and c.args.get("thread_ts") == ticket["slack_ts"]
            for c in slack.of("chat.postMessage")
        )

    await wait_for(told_in_thread)


@pytest.mark.asyncio
async def test_stop_blocks_replies_with_the_reason_start_lifts_it_help_is_answered(
    hub: Hub, apis: tuple[FakeTwilioApi, FakeSlackApi]
) -> None:
    twilio, _ = apis
    stop = await text_in(hub, "Stop")
    contact = await hub.api("GET", f"/api/v1/contacts/{stop.contact_id}")
    assert [(o["channel"], o["address"], o["reason"]) for o in contact["opt_outs"]] == [("sms", CUSTOMER, "STOP")]
    refused = await reply(hub, stop.conversation_id, "Sorry to see you go - anything else?")
    await wait_for(lambda: status_is(hub, refused, "failed"))
    assert "opted out" in (await message(hub, refused))["delivery_error"]
    assert texts(twilio) == []  # nothing went to Twilio, not even an attempt
    assert not [r for r in twilio.requests if r[0] == "POST"]

    await text_in(hub, "START")
    assert (await hub.api("GET", f"/api/v1/contacts/{stop.contact_id}"))["opt_outs"] == []
    welcome = await reply(hub, stop.conversation_id, "Welcome back!")
    await wait_for(lambda: status_is(hub, welcome, "sent"))

    await text_in(hub, "help")
    await wait_for(lambda: len(texts(twilio)) == 2)
    assert texts(twilio)[1].startswith("Acme support: reply with your question")


@pytest.mark.asyncio
async def test_twilio_unsubscribed_refusal_opts_the_number_out(
    hub: Hub, apis: tuple[FakeTwilioApi, FakeSlackApi]
) -> None:
    twilio, _ = apis
    question = await text_in(hub, "hello?")
    twilio.fail_next = [(400, 21610)]
    refused = await reply(hub, question.conversation_id, "Hi! How can we help?")
    await wait_for(lambda: status_is(hub, refused, "failed"))
    assert (await message(hub, refused))["delivery_error"].startswith("21610")
    contact = await hub.api("GET", f"/api/v1/contacts/{question.contact_id}")
    assert [o["reason"] for o in contact["opt_outs"]] == ["provider 21610"]
    dead = await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox", "status": "dead"})
    assert [e["message_id"] for e in dead["items"]] == [refused]


@pytest.mark.asyncio
async def test_a_text_twilio_accepted_while_the_hub_lost_the_answer_is_sent_once(
    hub: Hub, apis: tuple[FakeTwilioApi, FakeSlackApi]
) -> None:
    twilio, _ = apis
    question = await text_in(hub, "where is my refund?")
    # Twilio takes the message and never answers: the hub's attempt times out
    # without a sid, and the outbox tries again (attempt 2).
    twilio.after_accept.append("hang")
    sent = await reply(hub, question.conversation_id, "Your refund left today.")
    await wait_for(lambda: status_is(hub, sent, "sent"), timeout=20)
    assert texts(twilio) == ["Your refund left today."]
    assert [r for r in twilio.requests if r[0] == "GET"], "the second attempt looked at Twilio's list first"
    entries = await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox", "status": "delivered"})
    [entry] = [e for e in entries["items"] if e["message_id"] == sent]
    assert entry["attempts"] == 2 and entry["provider_id"] == twilio.sent_to(CUSTOMER)[0].sid


@pytest.mark.asyncio
async def test_a_burst_of_500_and_429_ends_in_one_text(hub: Hub, apis: tuple[FakeTwilioApi, FakeSlackApi]) -> None:
    twilio, _ = apis
    question = await text_in(hub, "are you there?")
    twilio.fail_next = [500, 429, 503, 429]
    sent = await reply(hub, question.conversation_id, "Yes, we are here.")
    await wait_for(lambda: status_is(hub, sent, "sent"), timeout=20)
    assert texts(twilio) == ["Yes, we are here."]


@pytest.mark.asyncio
async def test_the_agents_slack_thread_reply_arrives_as_a_text(
    hub: Hub, apis: tuple[FakeTwilioApi, FakeSlackApi]
) -> None:
    twilio, slack = apis
    await make_agent(hub)
    question = await text_in(hub, "I was charged twice")
    await hub.tickets.open(question.conversation_id, priority="high", reason="billing", source="bot")
    [ticket] = (await hub.api("GET", "/api/v1/tickets"))["items"]
    ticket = await posted_card(hub, slack, ticket["id"])
    response = await thread_event(hub, ticket, "Refunded the second charge just now.", user=AGENT_SLACK)
    assert response.status == 200
    await wait_for(lambda: texts(twilio) == ["Refunded the second charge just now."])


@pytest.mark.asyncio
async def test_texting_and_chatting_with_the_same_verified_number_is_one_contact(hub: Hub) -> None:
    texted = await text_in(hub, "hi, texting you")
    socket = await hub.client.ws_connect("/channels/webchat/ws")
    user = {
        "user_id": "cust-77",
        "name": "Ada",
        "phone": "(555) 123-0001",  # national format: HUB_SMS_DEFAULT_REGION makes it +15551230001
        "user_hash": user_hash(IDENTITY_SECRET, "cust-77"),
    }
    welcome, _ = await hello(socket, user=user)
    assert welcome["identity"] == "verified"
    await socket.send_json({"type": "message", "client_id": f"c{time.time_ns()}", "text": "and now chatting"})
    ack = await receive_until(socket, "ack")
    chatted = await message(hub, ack["message"]["id"])
    assert chatted["contact_id"] == texted.contact_id
    page = await hub.api("GET", f"/api/v1/contacts/{texted.contact_id}/timeline", params={"limit": 50})
    assert {m["channel"] for m in page["items"]} == {"sms", "webchat"}
    await socket.close()
