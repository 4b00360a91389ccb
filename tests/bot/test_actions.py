"""The custom actions, called directly with a real rasa_sdk Tracker and CollectingDispatcher.

The knowledge base is the fake search API from conftest.py, over real HTTP on
127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import ActionAnswerFromKB, ActionHandoff
from bot.actions.replies import link, plain_text, short_reply
from bot.actions.routing import HANDOFF, KB, REPLY, route

from .conftest import PUBLIC_URL, FakeKnowledgeBase

def parse(text: str, intent: str, confidence: float = 0.95, **ranking: float) -> dict[str, Any]:
    ranked = [{"name": intent, "confidence": confidence}] + [
        {"name": name, "confidence": value} for name, value in ranking.items()
    ]
    return {"text": text, "intent": {"name": intent, "confidence": confidence}, "intent_ranking": ranked, "entities": []}


def tracker(
    *messages: dict[str, Any], clarify_asked: bool = False, metadata: dict[str, Any] | None = None
) -> Tracker:
    """A tracker whose user turns are ``messages`` (parse dicts), the last one being the latest."""
    events: list[dict[str, Any]] = []
    for message in messages:
        events.append({"event": "user", "text": message["text"], "parse_data": message, "metadata": metadata or {}})
        events.append({"event": "action", "name": "action_answer_from_kb"})
    latest = dict(messages[-1], metadata=metadata or {})
    return Tracker(
        sender_id="conversation-1",
        slots={"clarify_asked": clarify_asked},
        latest_message=latest,
        events=events[:-1],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


async def run(action: Any, state: Tracker) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, state, {})
    return dispatcher.messages, events


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages if m.get("text")]


def payloads(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["custom"] for m in messages if m.get("custom")]


@pytest.mark.asyncio
async def test_confident_answer_quotes_the_passage_and_links_the_article(fake_kb: FakeKnowledgeBase) -> None:
    messages, events = await run(ActionAnswerFromKB(), tracker(parse("I forgot my password", "ask_question")))

    [reply] = texts(messages)
    assert reply.startswith("Choose Forgot password on the sign-in page")
    assert reply.endswith(f"Read more: {PUBLIC_URL}/help/articles/reset-your-password#steps")
    [payload] = payloads(messages)
    assert payload["confidence"] == pytest.approx(0.6)
    assert payload["kb_hits"][0]["article_id"] == "reset-your-password"
    assert events == [SlotSet("clarify_asked", False)]
    assert fake_kb.requests == [{"q": "I forgot my password", "k": "3", "collection": "default"}]


@pytest.mark.asyncio
async def test_collection_comes_from_the_message_metadata(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(parse("refund for my return", "ask_question"), metadata={"collection": "acme"})
    messages, _ = await run(ActionAnswerFromKB(), state)

    assert fake_kb.requests[0]["collection"] == "acme"
    assert texts(messages)[0].startswith("We refund to the original payment method")


@pytest.mark.asyncio
async def test_unsure_search_asks_one_clarifying_question(fake_kb: FakeKnowledgeBase) -> None:
    messages, events = await run(ActionAnswerFromKB(), tracker(parse("hmm the thing with my stuff", "nlu_fallback")))

    [question] = texts(messages)
    assert "tell me a little more" in question.lower()
    assert payloads(messages) == [{"clarify": True, "confidence": 0.0}]
    assert events == [SlotSet("clarify_asked", True)]


@pytest.mark.asyncio
async def test_an_empty_message_gets_the_generic_question_without_a_search(fake_kb: FakeKnowledgeBase) -> None:
    messages, events = await run(ActionAnswerFromKB(), tracker(parse("", "nlu_fallback", 0.0)))

    assert texts(messages) == ["I'm not sure I've understood. Could you tell me a little more about what you need?"]
    assert fake_kb.requests == []
    assert events == [SlotSet("clarify_asked", True)]


@pytest.mark.asyncio
async def test_clarifying_question_names_the_closest_articles(fake_kb: FakeKnowledgeBase) -> None:
    messages, _ = await run(ActionAnswerFromKB(), tracker(parse("the password thing", "ask_question")))

    assert texts(messages) == [
        'I\'m not sure I\'ve understood. Is your question about "Reset your password" or "Refunds"? '
        "Tell me a little more and I'll look again."
    ]


@pytest.mark.asyncio
async def test_the_reply_to_a_clarifying_question_is_searched_with_the_question(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(
        parse("I forgot it", "ask_question"), parse("the password", "ask_question"), clarify_asked=True
    )
    messages, events = await run(ActionAnswerFromKB(), state)

    assert [r["q"] for r in fake_kb.requests] == ["the password", "I forgot it the password"]
    assert texts(messages)[0].startswith("Choose Forgot password")
    assert events == [SlotSet("clarify_asked", False)]


@pytest.mark.asyncio
async def test_still_unsure_after_clarifying_hands_off(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(parse("I have an issue", "ask_question"), parse("with my thing", "affirm"), clarify_asked=True)
    messages, events = await run(ActionAnswerFromKB(), state)

    assert texts(messages) == ["I'm connecting you with a member of our team. They'll reply here as soon as they can."]
    [payload] = payloads(messages)
    assert payload["handoff"] is True
    assert payload["priority"] == "normal"
    assert payload["reason"] == "low-confidence"
    assert events == [SlotSet("clarify_asked", False), ConversationPaused()]


@pytest.mark.asyncio
# 200 with the fake's plain-text failure body: an answer that is not JSON.
@pytest.mark.parametrize("status", [500, 404, 200])
async def test_knowledge_base_errors_hand_off(fake_kb: FakeKnowledgeBase, status: int) -> None:
    fake_kb.fail_status = status
    messages, events = await run(ActionAnswerFromKB(), tracker(parse("I forgot my password", "ask_question")))

    [payload] = payloads(messages)
    assert payload["handoff"] is True and payload["reason"] == "kb-unavailable" and payload["priority"] == "normal"
    assert ConversationPaused() in events


@pytest.mark.asyncio
async def test_unreachable_knowledge_base_hands_off(fake_kb: FakeKnowledgeBase, monkeypatch) -> None:
    port = fake_kb.port
    await fake_kb.stop()
    monkeypatch.setenv("HUB_URL", f"http://127.0.0.1:{port}")
    messages, events = await run(ActionAnswerFromKB(), tracker(parse("I forgot my password", "ask_question")))

    assert texts(messages) and payloads(messages)[0]["reason"] == "kb-unavailable"
    assert events[-1] == ConversationPaused()


@pytest.mark.asyncio
async def test_a_question_that_may_be_urgent_is_escalated_without_searching(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(parse("why have I paid two times", "ask_question", 0.6, urgent_issue=0.35))
    messages, events = await run(ActionAnswerFromKB(), state)

    assert fake_kb.requests == []
    assert payloads(messages)[0]["priority"] == "urgent"
    assert events[-1] == ConversationPaused()


@pytest.mark.asyncio
async def test_api_token_is_sent_when_configured(fake_kb: FakeKnowledgeBase, monkeypatch) -> None:
    await run(ActionAnswerFromKB(), tracker(parse("I forgot my password", "ask_question")))
    monkeypatch.setenv("HUB_BOT_API_TOKEN", "shub_secret")
    await run(ActionAnswerFromKB(), tracker(parse("I forgot my password", "ask_question")))

    assert fake_kb.authorizations == [None, "Bearer shub_secret"]


@pytest.mark.parametrize(
    ("intent", "priority", "reason", "text_start"),
    [
        ("urgent_issue", "urgent", "urgent-issue", "I'm connecting you with a member of our team right away"),
        ("complaint", "high", "complaint", "I'm sorry about this."),
        ("request_human", "normal", "customer-request", "I'm connecting you with a member of our team."),
        ("affirm", "normal", "customer-request", "I'm connecting you with a member of our team."),
    ],
)
@pytest.mark.asyncio
async def test_handoff_priority_follows_the_intent(intent: str, priority: str, reason: str, text_start: str) -> None:
    messages, events = await run(ActionHandoff(), tracker(parse("some text", intent)))

    [text] = texts(messages)
    assert text.startswith(text_start)
    [payload] = payloads(messages)
    assert payload == {
        "handoff": True,
        "priority": priority,
        "reason": reason,
        "intent": intent,
        "intent_confidence": 0.95,
    }
    assert events == [SlotSet("clarify_asked", False), ConversationPaused()]


@pytest.mark.asyncio
async def test_a_complaint_that_may_be_urgent_is_handed_off_as_urgent() -> None:
    messages, _ = await run(ActionHandoff(), tracker(parse("nobody answers", "complaint", 0.6, urgent_issue=0.35)))

    assert payloads(messages)[0]["priority"] == "urgent"


def test_route() -> None:
    assert route(parse("x", "ask_question")).action == KB
    assert route(parse("x", "nlu_fallback", 0.4)).action == KB
    assert route(parse("x", "greet")).action == REPLY
    assert route(parse("x", "complaint")).priority == "high"
    assert route(parse("x", "ask_question", 0.6, urgent_issue=0.35)).priority == "urgent"
    assert route(parse("x", "ask_question", 0.7, urgent_issue=0.25)).action == KB
    assert route(parse("x", "ask_question", 0.6, urgent_issue=0.35), escalate_at=1.01).action == KB
    # A "yes" is never escalated: it is the answer to one of the bot's questions.
    assert route(parse("x", "affirm", 0.5, urgent_issue=0.4)).action == REPLY
    assert route(parse("x", "urgent_issue", 0.3)).action == HANDOFF


def test_short_reply_keeps_whole_sentences_within_the_limit() -> None:
    passage = "One two three. " * 40
    reply = short_reply(passage)
    assert reply == "One two three. One two three. One two three."
    long_sentence = "word " * 200
    cut = short_reply(long_sentence)
    assert len(cut) <= 300 and cut.endswith("word…")
    assert short_reply("Short.") == "Short."
    assert short_reply("") == ""


def test_short_reply_never_cuts_a_word() -> None:
    text = "Alpha " * 49 + "extraordinarily long ending"
    cut = short_reply(text)
    assert cut.endswith("…")
    assert cut[:-1].split()[-1] in {"Alpha", "extraordinarily"}
    assert len(cut) <= 300


def test_plain_text_drops_markdown() -> None:
    assert plain_text("## Steps\n\n1. Open **Settings**\n2. Choose [Security](/x)") == "Steps. Open Settings. Choose Security."


def test_link_joins_relative_urls_to_the_public_url() -> None:
    assert link("https://hub.example/", "/help/a#b") == "https://hub.example/help/a#b"
    assert link("https://hub.example", "https://other.example/x") == "https://other.example/x"
