"""The whole bot path, for real: the hub starts the real Rasa server and the
real action server as supervised child processes; the action server answers
from the hub's real knowledge base (the sample KB, the real embedding model)
through GET /api/v1/kb/search; customers write through the fake channel, and
text through the SMS channel (Twilio-signed, answered through a fake Twilio API)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import pytest_asyncio

from bot.actions import messages
from bot.rasa import launch, model
from hub.keys import BOT_BRIDGE, BOT_PROCESSES, SETTINGS
from knowledge_base.service import MAX_QUERY_CHARS
from tests.channels.email_support import CUSTOMER, REPLY_SECRET, SUPPORT, mail, smtp_send
from tests.conftest import Hub, wait_for
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi, inbound_params, sign_twilio

from .conftest import start_rasa_hub

pytestmark = [pytest.mark.rasa, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def twilio() -> AsyncIterator[FakeTwilioApi]:
    api = await FakeTwilioApi().start()
    try:
        yield api
    finally:
        await api.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sink() -> AsyncIterator[SmtpSink]:
    server = await SmtpSink().start()
    try:
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    rasa_model: model.ModelInfo, tmp_path_factory: pytest.TempPathFactory, twilio: FakeTwilioApi, sink: SmtpSink
) -> AsyncIterator[Hub]:
    hub = await start_rasa_hub(
        rasa_model,
        tmp_path_factory.mktemp("hub-rasa"),
        channels="fake,sms,email",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from="+15005550006",
        twilio_api_url=twilio.base_url,
        email_addresses=SUPPORT,
        email_reply_secret=REPLY_SECRET,
        email_smtp_port=launch.free_port(),
        email_relay_host="127.0.0.1",
        email_relay_port=sink.port,
        email_relay_tls="none",
    )
    try:
        yield hub
    finally:
        await hub.client.close()


async def _text(hub: Hub, sender: str, body: str) -> dict:
    """A text, posted as Twilio posts it (signed for the hub's public URL)."""
    params = inbound_params(sender=sender, body=body)
    url = hub.app[SETTINGS].public_url.rstrip("/") + "/channels/sms/twilio"
    response = await hub.client.post("/channels/sms/twilio", data=params, headers=sign_twilio(url, params))
    assert response.status == 200, await response.text()
    conversation = await hub.service.conversation_for("sms", sender)
    [message] = [m for m in await hub.service.history(conversation.id) if m.external_id == params["MessageSid"]]
    return await hub.api("GET", f"/api/v1/messages/{message.id}")


async def test_a_texted_kb_question_is_answered_by_text_with_the_article_link(
    stack: Hub, twilio: FakeTwilioApi
) -> None:
    asked = await _text(stack, "+15557770001", "How do I reset my password? I can't log in")
    replies = await wait_for(lambda: _bot_replies(stack, asked["conversation_id"], asked["id"]), timeout=30)
    hits = replies[0]["meta"]["kb_hits"]
    link = f"/help/articles/{hits[0]['article_id']}"
    await wait_for(lambda: twilio.sent_to("+15557770001"), timeout=15)
    sent = "".join(m.body for m in twilio.sent_to("+15557770001"))
    assert link in sent and "password" in hits[0]["article_id"]


async def test_a_mailed_kb_question_is_answered_by_mail_with_the_article_link(stack: Hub, sink: SmtpSink) -> None:
    raw = mail(
        "Hi, I forgot my password and cannot log in. How do I reset it?",
        subject="Password",
        message_id="<kb1@customer.example.org>",
    )
    assert (await smtp_send(int(stack.channel("email").smtp.port), raw)).data == 250
    [answer] = await sink.wait_for(1, timeout=40)
    assert answer.rcpt_tos == (CUSTOMER,) and answer.message["In-Reply-To"] == "<kb1@customer.example.org>"
    assert answer.message["Auto-Submitted"] == "auto-replied"
    assert "/help/articles/" in answer.message.get_body(("plain",)).get_content()


async def test_a_mail_that_leaves_its_question_to_the_subject_line_is_answered(stack: Hub, sink: SmtpSink) -> None:
    customer = "grace@customer.example.org"
    raw = mail(
        "I've tried everything I can think of, please help.",
        sender=f"Grace Hopper <{customer}>",
        subject="Re: Forgot my password, how do I reset it?",
        message_id="<subject1@customer.example.org>",
    )
    assert (await smtp_send(int(stack.channel("email").smtp.port), raw)).data == 250
    answer = await wait_for(lambda: _mailed_to(sink, customer), timeout=40)
    assert "/help/articles/" in answer.message.get_body(("plain",)).get_content()
    [conversation] = [
        c
        for c in (await stack.api("GET", "/api/v1/conversations", params={"channel": "email"}))["items"]
        if c["subject"] == "Re: Forgot my password, how do I reset it?"
    ]
    page = await stack.api("GET", f"/api/v1/conversations/{conversation['id']}/timeline", params={"limit": 50})
    [reply] = [m for m in page["items"] if m["author_kind"] == "bot"]
    assert "password" in reply["meta"]["kb_hits"][0]["article_id"]


def _mailed_to(sink: SmtpSink, address: str) -> Any:
    return next((m for m in sink.messages if m.rcpt_tos == (address,)), None)


async def test_an_urgent_text_opens_an_urgent_ticket(stack: Hub) -> None:
    asked = await _text(stack, "+15557770002", "your site is down and I'm losing money every minute")
    await wait_for(lambda: _is(stack, asked["conversation_id"], handler="human", priority="urgent"), timeout=30)
    tickets = (await stack.api("GET", "/api/v1/tickets"))["items"]
    assert [t["priority"] for t in tickets if t["conversation_id"] == asked["conversation_id"]] == ["urgent"]


async def _say(hub: Hub, sender: str, text: str) -> dict:
    r = await hub.inbound({"from": sender, "text": text})
    return await hub.api("GET", f"/api/v1/messages/{r['received'][0]['message_id']}")


async def _bot_replies(hub: Hub, conversation_id: int, after_id: int) -> list[dict]:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline", params={"limit": 200})
    return [m for m in page["items"] if m["author_kind"] == "bot" and m["id"] > after_id]


async def _conversation(hub: Hub, conversation_id: int) -> dict:
    return await hub.api("GET", f"/api/v1/conversations/{conversation_id}")


async def test_kb_question_gets_the_right_article(stack: Hub) -> None:
    asked = await _say(stack, "kb-asker", "I forgot my password and can't log in, how do I reset it?")
    replies = await wait_for(lambda: _bot_replies(stack, asked["conversation_id"], asked["id"]), timeout=30)
    answer = replies[0]
    assert "Read more:" in answer["body"]
    hits = answer["meta"]["kb_hits"]
    assert hits and "password" in hits[0]["article_id"]
    assert f"/help/articles/{hits[0]['article_id']}" in answer["body"]
    sent = stack.channel("fake").recorder.sent
    await wait_for(lambda: any(m.text == answer["body"] for m in sent))


async def test_a_question_wrapped_in_greetings_and_thanks_is_answered_and_rasa_reads_it_unwrapped(
    stack: Hub,
) -> None:
    question = "I forgot my password and can't log in, how do I reset it?"
    wrapped = f"Hello there, I hope you're having a lovely week.\n{question}\nThanks so much, have a nice day"
    asked = await _say(stack, "wrapped-asker", wrapped)
    replies = await wait_for(lambda: _bot_replies(stack, asked["conversation_id"], asked["id"]), timeout=30)
    answer = replies[0]
    hits = answer["meta"]["kb_hits"]
    assert hits and "password" in hits[0]["article_id"] and answer["meta"]["decision"]["action"] == "answer"
    assert asked["body"] == wrapped  # the timeline keeps what the customer wrote
    rasa = stack.app[BOT_BRIDGE].rasa
    cid = asked["conversation_id"]
    async with rasa.session.get(f"{rasa.base_url}/conversations/{cid}/tracker", params=rasa._params()) as got:
        events = (await got.json())["events"]
    # Rasa read the message as the search does: not small talk.
    assert [e["text"] for e in events if e.get("event") == "user"] == [question]


LONG_EMAIL = """Hello,

I have been shopping with you for a few years now, mostly boots and the odd rain jacket for my kids.
Last spring I bought a tent from you for a trip to the lakes and it was great, so no complaints there.
This week I wanted to order a new pair of walking boots before our holiday in the mountains next month.
I went to the website on my laptop on Tuesday evening and tried to sign in to my account.
It told me the password was wrong, although I was fairly sure it was the one I always use.
I tried it again a couple of times with and without capitals and then it said to wait and try later.
My husband thinks I may have changed it last year when we moved house, but neither of us can remember.
I also tried on my phone in case it was the laptop, and the same thing happened there.
I forgot my password and can't log in, how do I reset it?
I would rather not open a second account because all my old orders and my address are saved on this one.
The email address on the account is the same one I am writing from, if that helps you find it.
We leave on the 14th, so I would like to get the boots ordered this weekend if I can.

Many thanks,
Helen Marsh
07700 900123
"""


async def test_a_long_email_is_answered_from_the_sentences_that_ask(stack: Hub) -> None:
    # Longer than a search query may be (1,000 characters): before, the bot's search answered 400
    # and the customer was handed off as "kb-unavailable".
    assert len(" ".join(LONG_EMAIL.split())) > MAX_QUERY_CHARS
    asked = await _say(stack, "long-emailer", LONG_EMAIL)
    replies = await wait_for(lambda: _bot_replies(stack, asked["conversation_id"], asked["id"]), timeout=30)
    answer = replies[0]
    hits = answer["meta"]["kb_hits"]
    assert answer["meta"]["decision"]["action"] == "answer" and "password" in hits[0]["article_id"]
    assert asked["body"] == LONG_EMAIL  # the timeline keeps all of it
    rasa = stack.app[BOT_BRIDGE].rasa
    cid = asked["conversation_id"]
    async with rasa.session.get(f"{rasa.base_url}/conversations/{cid}/tracker", params=rasa._params()) as got:
        events = (await got.json())["events"]
    [read] = [e["text"] for e in events if e.get("event") == "user"]
    assert len(read) <= MAX_QUERY_CHARS and "how do I reset it?" in read
    assert "Many thanks" not in read and "Hello" not in read


async def test_asking_for_a_person_hands_off(stack: Hub) -> None:
    asked = await _say(stack, "wants-human", "I want to talk to a person")
    await wait_for(lambda: _is(stack, asked["conversation_id"], handler="human"), timeout=30)
    replies = await _bot_replies(stack, asked["conversation_id"], asked["id"])
    assert replies, "the customer is told what happens"


async def test_urgent_issue_hands_off_as_urgent(stack: Hub) -> None:
    asked = await _say(stack, "site-down", "your site is down and I'm losing money")
    await wait_for(lambda: _is(stack, asked["conversation_id"], handler="human", priority="urgent"), timeout=30)


async def test_a_customer_who_may_harm_themselves_is_handed_off_at_once_and_told_where_to_get_help(
    stack: Hub,
) -> None:
    asked = await _say(stack, "at-risk", "honestly thinking about suicide, can you just close my account")
    await wait_for(lambda: _is(stack, asked["conversation_id"], handler="human", priority="urgent"), timeout=30)
    [reply] = [m for m in await _bot_replies(stack, asked["conversation_id"], asked["id"]) if m["body"]]
    assert messages.SAFETY in reply["body"]
    assert "safety" in reply["meta"]["decision"]["signals"]


async def test_after_an_agent_resolves_the_bot_answers_again(stack: Hub) -> None:
    asked = await _say(stack, "resolved-later", "Can I speak to a human agent please?")
    cid = asked["conversation_id"]
    await wait_for(lambda: _is(stack, cid, handler="human"), timeout=30)
    await stack.api(
        "POST",
        f"/api/v1/conversations/{cid}/messages",
        role="agent",
        json={"text": "Hi, Sam here. Sorted!"},
        expect=201,
    )
    await stack.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"status": "resolved"})
    await wait_for(lambda: _is(stack, cid, handler="bot"), timeout=10)
    again = await _say(stack, "resolved-later", "How long does a refund take?")
    assert again["conversation_id"] == cid
    replies = await wait_for(lambda: _bot_replies(stack, cid, again["id"]), timeout=30)
    assert "Read more:" in replies[0]["body"] and not replies[0]["meta"].get("fallback")


async def test_killing_rasa_falls_back_and_loses_nothing(stack: Hub) -> None:
    [_, rasa] = stack.app[BOT_PROCESSES]
    bridge = stack.app[BOT_BRIDGE]
    # Rasa is up and the bridge asks it before it is killed (not between restarts).
    await wait_for(lambda: rasa.running and bridge.held is None, timeout=60)
    first = await _say(stack, "unlucky", "What payment methods do you accept?")
    replies = await wait_for(lambda: _bot_replies(stack, first["conversation_id"], first["id"]), timeout=30)
    assert rasa.running, "Rasa went down before the test killed it"
    # Answered by Rasa, not by the fallback: the kill below is what takes it away.
    assert not replies[0]["meta"].get("fallback"), (rasa.restarts, bridge.held)
    restarts = rasa.restarts
    await rasa.kill()
    during = await _say(stack, "unlucky", "How do I return an item I bought?")
    replies = await wait_for(lambda: _bot_replies(stack, during["conversation_id"], during["id"]), timeout=40)
    assert replies[0]["meta"].get("fallback") is True
    ready = await (await stack.client.get("/readyz")).json()
    assert ready["status"] == "degraded"
    # The supervisor brings Rasa back; the bridge holds (fallback answers)
    # until the new Rasa answers and is warmed up, then the bot answers normally.
    await wait_for(lambda: rasa.restarts > restarts, timeout=30)
    await wait_for(lambda: bridge.held is not None, timeout=60)
    await wait_for(lambda: bridge.held is None, timeout=180, interval=0.5)
    after = await _say(stack, "lucky-again", "do you ship to Canada?")
    replies = await wait_for(lambda: _bot_replies(stack, after["conversation_id"], after["id"]), timeout=40)
    assert not replies[0]["meta"].get("fallback"), "the bot did not answer normally after Rasa came back"
    assert (await (await stack.client.get("/readyz")).json())["status"] == "ready"
    # Every customer message of this conversation got at least one answer.
    page = await stack.api("GET", f"/api/v1/conversations/{first['conversation_id']}/timeline", params={"limit": 200})
    customer = [m["id"] for m in page["items"] if m["author_kind"] == "customer"]
    answered = {m["meta"].get("in_reply_to") for m in page["items"] if m["author_kind"] == "bot"}
    assert set(customer) <= answered


async def test_an_erased_customer_leaves_nothing_in_rasas_tracker_or_the_log(
    stack: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """Erased through the API, a customer who talked to the real bot and was
    handed off: the erasure's durable forget job empties the real Rasa's
    tracker, and no INFO line (the hub's, or Rasa's and the action server's
    output the hub relays) carried their name, address or words."""
    caplog.set_level(logging.INFO)
    name, address, words = "Ottilie Brannock", "ob-visitor-7731", "copper kettle"
    first = await stack.inbound({"from": address, "name": name, "text": f"where is my {words} order?"})
    asked = await stack.api("GET", f"/api/v1/messages/{first['received'][0]['message_id']}")
    cid, contact = asked["conversation_id"], asked["contact_id"]
    await wait_for(lambda: _bot_replies(stack, cid, asked["id"]), timeout=30)
    await stack.inbound({"from": address, "text": f"I want to talk to a person about the {words}"})
    await wait_for(lambda: _is(stack, cid, handler="human"), timeout=30)
    rasa = stack.app[BOT_BRIDGE].rasa

    async def tracker() -> dict:
        async with rasa.session.get(f"{rasa.base_url}/conversations/{cid}/tracker", params=rasa._params()) as answer:
            assert answer.status == 200
            return dict(await answer.json())

    said = [e.get("text") or "" for e in (await tracker())["events"] if e.get("event") == "user"]
    assert any(words in text for text in said)
    await stack.api("DELETE", f"/api/v1/contacts/{contact}")

    async def forgotten() -> bool:
        events = (await tracker())["events"]
        return not [e for e in events if e.get("event") == "user"]

    await wait_for(forgotten, timeout=30)
    assert not [n for n in (name, address, words) if n in str(await tracker())]
    # The test server's access log quotes the action server's KB searches
    # (?q=...); `hub serve` runs without one (run_app(access_log=None)).
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name != "aiohttp.access"]
    # Rasa's and the action server's relayed output (``child.*`` loggers) is
    # among these lines when they print during the test; the stack is shared
    # by the module, so their start-up lines went to an earlier test.
    needles = [form for n in (name, address, words) for form in (n, quote_plus(n), quote(n))]
    assert not [line for line in logged if any(n in line for n in needles)]


async def _is(hub: Hub, cid: int, **expected: str) -> bool:
    conversation = await _conversation(hub, cid)
    return all(conversation[k] == v for k, v in expected.items())
