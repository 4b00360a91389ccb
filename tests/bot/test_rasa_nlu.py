"""The real Rasa server and action server, through the REST channel the hub uses.

Needs .venv-rasa (skipped without it, failing on CI); the first run trains the
model (~40 s). The knowledge base is conftest's fake search API.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .conftest import PUBLIC_URL, RasaStack

pytestmark = pytest.mark.rasa


def conversation() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def texts(replies: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in replies if r.get("text")]


def custom(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["custom"] for r in replies if r.get("custom")]


def test_greeting_gets_a_greeting(rasa_stack: RasaStack) -> None:
    replies = rasa_stack.send(conversation(), "hello there")

    assert texts(replies) and texts(replies)[0].startswith("Hi!")
    assert custom(replies) == []


def test_asking_for_a_person_hands_off(rasa_stack: RasaStack) -> None:
    replies = rasa_stack.send(conversation(), "I want to talk to a person")

    [payload] = custom(replies)
    assert payload["handoff"] is True
    assert payload["priority"] == "normal"
    assert payload["reason"] == "customer-request"
    # Neutral: the hub appends what the team can promise (hub/bot/promise.py).
    assert texts(replies)[0] == "I'm passing you to our team."


def test_an_outage_is_an_urgent_handoff(rasa_stack: RasaStack) -> None:
    replies = rasa_stack.send(conversation(), "your site is down and I'm losing money")

    [payload] = custom(replies)
    assert payload["handoff"] is True
    assert payload["priority"] == "urgent"
    assert payload["intent"] == "urgent_issue"


def test_a_complaint_is_a_high_priority_handoff(rasa_stack: RasaStack) -> None:
    replies = rasa_stack.send(conversation(), "I'm really fed up, your service has been awful and nobody replies")

    [payload] = custom(replies)
    assert payload["handoff"] is True
    assert payload["priority"] in {"high", "urgent"}


def test_after_a_handoff_the_bot_is_silent_until_resumed(rasa_stack: RasaStack) -> None:
    sender = conversation()
    assert custom(rasa_stack.send(sender, "can I speak to a human please"))[0]["handoff"] is True

    assert rasa_stack.send(sender, "hello?") == []
    assert rasa_stack.send(sender, "how do I reset my password") == []
    assert rasa_stack.tracker(sender)["paused"] is True

    rasa_stack.resume(sender)

    assert rasa_stack.tracker(sender)["paused"] is False
    replies = rasa_stack.send(sender, "hi")
    assert texts(replies) and texts(replies)[0].startswith("Hi!")


def test_a_question_is_answered_from_the_knowledge_base(rasa_stack: RasaStack) -> None:
    sender = conversation()
    before = len(rasa_stack.kb.requests)
    replies = rasa_stack.send(sender, "how do I reset my password", metadata={"collection": "acme"})

    [answer] = texts(replies)
    assert answer.startswith("Choose Forgot password")
    assert answer.endswith(f"Read more: {PUBLIC_URL}/help/articles/reset-your-password#steps")
    [payload] = custom(replies)
    assert payload["kb_hits"][0]["article_id"] == "reset-your-password"
    assert payload["confidence"] >= 0.5
    assert rasa_stack.kb.requests[before:] == [
        {"q": "how do I reset my password", "k": "3", "collection": "acme", "excerpt": "1"}
    ]


def test_an_answer_that_did_not_help_leads_to_a_person(rasa_stack: RasaStack) -> None:
    sender = conversation()
    rasa_stack.send(sender, "how long does express delivery take")

    offer = rasa_stack.send(sender, "no, that's not what I asked")
    assert texts(offer) == [
        "Sorry that didn't answer it.",
        "Would you like me to connect you with a member of our team?",
    ]
    # The customer's vote on the answer travels to the hub (a phrasing an admin may accept... or not).
    [vote, decision] = custom(offer)
    assert (
        vote["kb_feedback"]["helpful"] is False
        and vote["kb_feedback"]["query"] == "how long does express delivery take"
    )
    assert decision["decision"]["action"] == "offer_human"

    replies = rasa_stack.send(sender, "yes please")
    [payload] = custom(replies)
    assert payload["handoff"] is True and payload["priority"] == "normal" and payload["reason"] == "customer-request"


def test_unclear_question_is_asked_once_then_a_person_is_offered(rasa_stack: RasaStack) -> None:
    sender = conversation()
    first = rasa_stack.send(sender, "I have a question about something I bought")
    [asked] = custom(first)
    assert asked["clarify"] is True and asked["decision"]["action"] in ("clarify", "topics")
    assert "tell me a little more" in texts(first)[0].lower()

    second = rasa_stack.send(sender, "the blue one")
    assert texts(second) == [
        "Sorry, I still couldn't find an answer to that.",
        "Would you like me to connect you with a member of our team?",
    ]
    assert custom(second)[0]["decision"]["action"] == "offer_human"

    third = rasa_stack.send(sender, "yes")
    [payload] = custom(third)
    assert payload["handoff"] is True and payload["reason"] == "customer-request" and payload["priority"] == "normal"


def test_off_topic_is_for_the_knowledge_base_to_decide(rasa_stack: RasaStack) -> None:
    replies = rasa_stack.send(conversation(), "tell me a joke")

    # What it can help with, from the knowledge base's own categories (the fake's).
    assert texts(replies) == [
        "Sorry, I couldn't find an answer to that in our help centre. I can help with Account, Billing and "
        "Delivery. Could you tell me a little more, or ask in other words?"
    ]
    assert custom(replies)[0]["decision"]["action"] == "topics"


def test_a_clarified_question_is_answered(rasa_stack: RasaStack) -> None:
    sender = conversation()
    first = rasa_stack.send(sender, "I forgot it, can you help")
    assert custom(first)[0]["clarify"] is True

    second = rasa_stack.send(sender, "the password")
    assert texts(second)[0].startswith("Choose Forgot password")
    assert custom(second)[0]["kb_hits"]


@pytest.mark.parametrize(
    ("message", "reply_start"),
    [
        ("are you a bot?", "I'm a virtual assistant."),
        ("thanks a lot", "You're welcome!"),
    ],
)
def test_small_talk_gets_its_canned_reply(rasa_stack: RasaStack, message: str, reply_start: str) -> None:
    replies = rasa_stack.send(conversation(), message)

    assert texts(replies) and texts(replies)[0].startswith(reply_start)
    assert custom(replies) == []
