"""The custom actions, called directly with a real rasa_sdk Tracker and CollectingDispatcher.

The knowledge base is the fake search API from conftest.py, over real HTTP on
127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import ActionAnswerFromKB, ActionFollowup, ActionHandoff, kb_client, topics
from bot.actions.replies import link, plain_text, short_reply
from bot.actions.routing import HANDOFF, KB, REPLY, route

from .conftest import PUBLIC_URL, FakeKnowledgeBase


def parse(text: str, intent: str, confidence: float = 0.95, **ranking: float) -> dict[str, Any]:
    ranked = [{"name": intent, "confidence": confidence}] + [
        {"name": name, "confidence": value} for name, value in ranking.items()
    ]
    return {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "intent_ranking": ranked,
        "entities": [],
    }


def tracker(
    *messages: dict[str, Any],
    clarify_asked: bool = False,
    metadata: dict[str, Any] | None = None,
    **slots: Any,
) -> Tracker:
    """A tracker whose user turns are ``messages`` (parse dicts), the last one being the latest."""
    events: list[dict[str, Any]] = []
    for message in messages:
        events.append({"event": "user", "text": message["text"], "parse_data": message, "metadata": metadata or {}})
        events.append({"event": "action", "name": "action_answer_from_kb"})
    latest = dict(messages[-1], metadata=metadata or {})
    return Tracker(
        sender_id="conversation-1",
        slots={"clarify_asked": clarify_asked, **slots},
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
    assert payload["confidence"] == pytest.approx(0.8)
    assert payload["kb_hits"][0]["article_id"] == "reset-your-password"
    assert payload["decision"] == {
        "action": "answer",
        "article_id": "reset-your-password",
        "collection": "default",
        "confidence": 0.8,
        "chosen": False,
    }
    assert events == [
        SlotSet("clarify_asked", False),
        SlotSet("last_decision", "answer"),
        SlotSet(
            "last_answer",
            {"query": "I forgot my password", "article_id": "reset-your-password", "collection": "default"},
        ),
    ]
    assert fake_kb.requests == [{"q": "I forgot my password", "k": "3", "collection": "default", "excerpt": "1"}]


@pytest.mark.asyncio
async def test_the_answer_quotes_the_excerpt_the_search_chose(fake_kb: FakeKnowledgeBase, monkeypatch) -> None:
    original = fake_kb.search

    def with_excerpt(query: str, k: int) -> dict[str, Any]:
        found = original(query, k)
        found["hits"][0]["excerpt"] = "Open it on the same device and choose a new password."
        return found

    monkeypatch.setattr(fake_kb, "search", with_excerpt)
    messages, _ = await run(ActionAnswerFromKB(), tracker(parse("I forgot my password", "ask_question")))

    assert texts(messages)[0].startswith("Open it on the same device and choose a new password.\nRead more:")


@pytest.mark.asyncio
async def test_collection_comes_from_the_message_metadata(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(parse("refund for my return", "ask_question"), metadata={"collection": "acme"})
    messages, _ = await run(ActionAnswerFromKB(), state)

    assert fake_kb.requests[0]["collection"] == "acme"
    assert texts(messages)[0].startswith("We refund to the original payment method")


@pytest.mark.asyncio
async def test_no_good_answer_says_what_the_knowledge_base_covers(fake_kb: FakeKnowledgeBase) -> None:
    messages, events = await run(ActionAnswerFromKB(), tracker(parse("can you write me a poem", "out_of_scope")))

    [reply] = texts(messages)
    # The knowledge base's own categories, never a hard-coded topic list.
    assert reply == (
        "Sorry, I couldn't find an answer to that in our help centre. I can help with Account, Billing and "
        "Delivery. Could you tell me a little more, or ask in other words?"
    )
    assert payloads(messages) == [
        {
            "clarify": True,
            "confidence": 0.0,
            "decision": {"action": "topics", "confidence": 0.0, "article_ids": [], "offered": []},
        }
    ]
    assert events == [SlotSet("clarify_asked", True), SlotSet("last_decision", "topics")]
    assert fake_kb.topic_requests == ["default"]


@pytest.mark.asyncio
async def test_topics_come_from_the_messages_collection_and_are_cached(fake_kb: FakeKnowledgeBase) -> None:
    for _ in range(2):
        await run(ActionAnswerFromKB(), tracker(parse("hmm", "nlu_fallback"), metadata={"collection": "acme"}))

    assert fake_kb.topic_requests == ["acme"]


def test_describe_names_categories_else_titles() -> None:
    assert topics.describe([{"name": "Billing", "titles": ["Refunds"]}]) == "Billing"
    assert topics.describe([{"name": "", "titles": ["Refunds", "Delivery times"]}]) == '"Refunds" and "Delivery times"'
    assert topics.describe([]) == ""


@pytest.mark.asyncio
async def test_an_empty_message_gets_the_no_answer_reply_without_a_search(fake_kb: FakeKnowledgeBase) -> None:
    messages, events = await run(ActionAnswerFromKB(), tracker(parse("", "nlu_fallback", 0.0)))

    assert texts(messages)[0].startswith("Sorry, I couldn't find an answer to that")
    assert fake_kb.requests == []
    assert events[0] == SlotSet("clarify_asked", True)


@pytest.mark.asyncio
async def test_clarifying_question_names_the_closest_articles(fake_kb: FakeKnowledgeBase) -> None:
    messages, _ = await run(ActionAnswerFromKB(), tracker(parse("the password thing", "ask_question")))

    assert texts(messages) == [
        'I\'m not sure I\'ve understood. Is your question about "Reset your password", "Refunds" or '
        '"Shipping options and delivery times"? Tell me a little more and I\'ll look again.'
    ]
    decision = payloads(messages)[0]["decision"]
    assert decision["article_ids"] == ["reset-your-password", "refunds", "shipping-options-and-delivery-times"]
    assert decision["offered"] == [
        {"title": "Reset your password", "article_id": "reset-your-password"},
        {"title": "Refunds", "article_id": "refunds"},
        {"title": "Shipping options and delivery times", "article_id": "shipping-options-and-delivery-times"},
    ]


def after_clarifying(
    question: str, reply: str, intent: str = "ask_question", metadata: dict[str, Any] | None = None
) -> Tracker:
    """A tracker where the bot asked back about "Reset your password", "Refunds" or "Shipping options and
    delivery times", and the customer replied."""
    offer = {
        "clarify": True,
        "confidence": 0.4,
        "decision": {
            "action": "clarify",
            "confidence": 0.4,
            "article_ids": ["reset-your-password", "refunds", "shipping-options-and-delivery-times"],
            "offered": [
                {"title": "Reset your password", "article_id": "reset-your-password"},
                {"title": "Refunds", "article_id": "refunds"},
                {"title": "Shipping options and delivery times", "article_id": "shipping-options-and-delivery-times"},
            ],
        },
    }
    state = tracker(parse(question, "ask_question"), parse(reply, intent), clarify_asked=True, metadata=metadata)
    asked = {"event": "bot", "text": "Is your question about ...?", "data": {"custom": offer}}
    state.events.insert(2, asked)
    return state


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reply", "article"),
    [
        ("Refunds", "refunds"),
        ("it's refunds", "refunds"),
        ("the second one", "refunds"),
        ("2", "refunds"),
        ("the last one", "shipping-options-and-delivery-times"),
        ("shipping options and delivery times", "shipping-options-and-delivery-times"),
    ],
)
async def test_a_reply_that_picks_an_offered_article_gets_that_article(
    fake_kb: FakeKnowledgeBase, reply: str, article: str
) -> None:
    messages, events = await run(ActionAnswerFromKB(), after_clarifying("the password thing", reply))

    [payload] = payloads(messages)
    assert payload["decision"]["article_id"] == article and payload["decision"]["chosen"] is True
    assert texts(messages)[0].endswith(f"{PUBLIC_URL}{payload['kb_hits'][0]['url']}")
    assert payload["kb_hits"][0]["article_id"] == article
    assert events[1] == SlotSet("last_decision", "answer")


@pytest.mark.asyncio
@pytest.mark.parametrize("reply", ["something else entirely", "the first or the second", "yes"])
async def test_a_reply_that_picks_no_offered_article_offers_a_person(fake_kb: FakeKnowledgeBase, reply: str) -> None:
    messages, _ = await run(ActionAnswerFromKB(), after_clarifying("the thing", reply))

    assert texts(messages) == ["Sorry, I still couldn't find an answer to that."]


@pytest.mark.asyncio
async def test_a_short_reply_naming_an_offered_title_wins_over_another_confident_article(
    fake_kb: FakeKnowledgeBase,
) -> None:
    # The reply alone finds the delivery article with confidence (two of its keywords), but it
    # names one offered title whole: "Refunds".
    messages, _ = await run(ActionAnswerFromKB(), after_clarifying("the thing", "refunds for express delivery"))

    assert payloads(messages)[0]["decision"]["article_id"] == "refunds"


@pytest.mark.asyncio
@pytest.mark.parametrize("intent", ["request_human", "complaint"])
async def test_a_picked_title_the_nlu_reads_as_a_request_for_a_person_is_still_the_customers_choice(
    fake_kb: FakeKnowledgeBase, intent: str
) -> None:
    messages, events = await run(ActionAnswerFromKB(), after_clarifying("the thing", "Refunds", intent))

    assert payloads(messages)[0]["decision"]["article_id"] == "refunds"
    assert ConversationPaused() not in events


@pytest.mark.asyncio
async def test_a_picked_title_only_the_nlu_calls_urgent_is_still_the_customers_choice(
    fake_kb: FakeKnowledgeBase,
) -> None:
    messages, events = await run(ActionAnswerFromKB(), after_clarifying("the thing", "Refunds", "urgent_issue"))

    assert payloads(messages)[0]["decision"]["article_id"] == "refunds"
    assert ConversationPaused() not in events


@pytest.mark.asyncio
async def test_a_picked_title_the_classifier_calls_urgent_is_still_the_customers_choice(
    fake_kb: FakeKnowledgeBase,
) -> None:
    # A title alone ("Paying monthly and missed payments") can read as urgent to the classifier.
    sure = {"triage": {"classifier": {"probability": 0.99, "urgent": True, "not_urgent": False}}}
    for intent in ("ask_question", "urgent_issue"):
        messages, events = await run(ActionAnswerFromKB(), after_clarifying("the thing", "Refunds", intent, sure))

        assert payloads(messages)[0]["decision"]["article_id"] == "refunds"
        assert ConversationPaused() not in events


URGENT_BY_EXAMPLE = {"triage": {"examples": {"urgent": True, "clearly_not_urgent": False, "margin": 0.2}}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reply", "intent", "metadata"),
    [
        ("Refunds", "urgent_issue", URGENT_BY_EXAMPLE),  # the examples call it urgent too
        ("Refunds", "ask_question", URGENT_BY_EXAMPLE),
        ("refunds, but someone has taken all the money out of my account this morning", "urgent_issue", None),
    ],
)
async def test_a_picked_title_that_is_urgent_is_handed_off_urgently(
    fake_kb: FakeKnowledgeBase, reply: str, intent: str, metadata: dict[str, Any] | None
) -> None:
    messages, events = await run(ActionAnswerFromKB(), after_clarifying("the thing", reply, intent, metadata))

    assert ConversationPaused() in events
    assert payloads(messages)[-1]["priority"] == "urgent"


@pytest.mark.asyncio
async def test_a_long_new_question_is_answered_on_its_own_even_if_it_names_a_title(fake_kb: FakeKnowledgeBase) -> None:
    reply = "actually forget refunds, I forgot my password and cannot reset it or sign in at all today"
    messages, _ = await run(ActionAnswerFromKB(), after_clarifying("the thing", reply))

    assert payloads(messages)[0]["decision"] == {
        "action": "answer",
        "article_id": "reset-your-password",
        "collection": "default",
        "confidence": 0.95,
        "chosen": False,
    }


@pytest.mark.asyncio
async def test_the_reply_to_a_clarifying_question_is_searched_with_the_question(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(parse("I forgot it", "ask_question"), parse("the password", "ask_question"), clarify_asked=True)
    messages, events = await run(ActionAnswerFromKB(), state)

    assert [r["q"] for r in fake_kb.requests] == ["the password", "I forgot it the password"]
    assert texts(messages)[0].startswith("Choose Forgot password")
    assert events[0] == SlotSet("clarify_asked", False)


@pytest.mark.asyncio
async def test_a_long_question_and_its_reply_are_searched_within_the_apis_limit(fake_kb: FakeKnowledgeBase) -> None:
    question = "I forgot it. " + "We had a long weekend away and nothing worked. " * 21
    assert len(question) > kb_client.MAX_QUERY_CHARS - len(" the password")
    state = tracker(parse(question, "ask_question"), parse("the password", "ask_question"), clarify_asked=True)
    messages, _ = await run(ActionAnswerFromKB(), state)

    [alone, combined] = [r["q"] for r in fake_kb.requests]
    assert alone == "the password"
    # As much of the question as fits before the reply, cut at a word: not a 400 and a handoff.
    start = combined.removesuffix(" the password")
    assert start != combined and (question + " ").startswith(start + " ") and len(start) > 900
    assert len(combined) <= kb_client.MAX_QUERY_CHARS
    assert texts(messages)[0].startswith("Choose Forgot password")

    # A message the hub did not read within the limit is searched from its start.
    fake_kb.requests.clear()
    await run(ActionAnswerFromKB(), tracker(parse(question + " the password", "ask_question")))
    [sent] = [r["q"] for r in fake_kb.requests]
    assert len(sent) <= kb_client.MAX_QUERY_CHARS and sent.startswith("I forgot it.")


@pytest.mark.asyncio
async def test_still_unsure_after_asking_once_offers_a_person(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(
        parse("I have an issue", "ask_question"), parse("with my thing", "ask_question"), clarify_asked=True
    )
    messages, events = await run(ActionAnswerFromKB(), state)

    assert texts(messages) == ["Sorry, I still couldn't find an answer to that."]
    assert [m.get("response") for m in messages if m.get("response")] == ["utter_offer_human"]
    assert payloads(messages) == [{"decision": {"action": "offer_human", "confidence": 0.0}}]
    assert events == [SlotSet("clarify_asked", False), SlotSet("last_decision", "offer_human")]
    assert ConversationPaused() not in events  # nobody is brought in until the customer says yes


ANSWERED = {"query": "how long do refunds take", "article_id": "refunds", "collection": "default"}


@pytest.mark.asyncio
async def test_yes_after_an_answer_is_a_helpful_vote() -> None:
    state = tracker(parse("yes thanks", "affirm"), last_decision="answer", last_answer=ANSWERED)
    messages, events = await run(ActionFollowup(), state)

    assert payloads(messages) == [{"kb_feedback": {"helpful": True, **ANSWERED}}]
    assert [m.get("response") for m in messages if m.get("response")] == ["utter_glad_to_help"]
    assert events == [SlotSet("last_decision", None)]


@pytest.mark.asyncio
async def test_no_after_an_answer_votes_and_offers_a_person() -> None:
    state = tracker(parse("no", "deny"), last_decision="answer", last_answer=ANSWERED)
    messages, events = await run(ActionFollowup(), state)

    assert payloads(messages)[0] == {"kb_feedback": {"helpful": False, **ANSWERED}}
    assert texts(messages) == ["Sorry that didn't answer it."]
    assert events[-1] == SlotSet("last_decision", "offer_human")


@pytest.mark.asyncio
async def test_yes_to_the_offer_of_a_person_hands_off_and_no_asks_again() -> None:
    messages, events = await run(ActionFollowup(), tracker(parse("yes please", "affirm"), last_decision="offer_human"))
    [payload] = payloads(messages)
    assert payload["handoff"] is True and payload["reason"] == "customer-request" and payload["priority"] == "normal"
    assert events[-1] == ConversationPaused()

    messages, events = await run(ActionFollowup(), tracker(parse("no", "deny"), last_decision="offer_human"))
    assert [m.get("response") for m in messages] == ["utter_rephrase"]
    assert ConversationPaused() not in events


@pytest.mark.asyncio
async def test_yes_after_a_clarifying_question_searches_again(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(
        parse("I forgot it", "ask_question"), parse("yes", "affirm"), clarify_asked=True, last_decision="clarify"
    )
    await run(ActionFollowup(), state)

    assert [r["q"] for r in fake_kb.requests] == ["yes", "I forgot it yes"]


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
async def test_an_unusable_search_answer_hands_off_and_the_log_keeps_the_question_out(
    fake_kb: FakeKnowledgeBase, caplog: pytest.LogCaptureFixture
) -> None:
    """The action server's log is relayed by the hub at INFO: its warning
    about a search answer it cannot use must not quote the answer, which
    echoes the customer's question."""
    caplog.set_level(logging.INFO)
    fake_kb.malformed = True
    question = "my walnut clock parcel never came, can I get a refund"
    messages, _ = await run(ActionAnswerFromKB(), tracker(parse(question, "ask_question")))

    assert payloads(messages)[0]["reason"] == "kb-unavailable"
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("unexpected search answer" in line for line in warned)
    assert not [line for line in warned if "walnut" in line]


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
        ("urgent_issue", "urgent", "urgent-issue", "I'm passing you to our team right away."),
        ("complaint", "high", "complaint", "I'm sorry about this. I'm passing you to our team"),
        ("request_human", "normal", "customer-request", "I'm passing you to our team."),
    ],
)
@pytest.mark.asyncio
async def test_handoff_priority_follows_the_intent(
    fake_kb: FakeKnowledgeBase, intent: str, priority: str, reason: str, text_start: str
) -> None:
    # "some text": nothing the knowledge base answers, so a complaint is handed off too.
    messages, events = await run(ActionHandoff(), tracker(parse("some text", intent)))

    [text] = texts(messages)
    assert text.startswith(text_start)
    # The bot promises no timing: the hub appends what the team can keep (hub/bot/promise.py).
    assert not any(word in text.lower() for word in ("shortly", "reply", "soon", "minute"))
    [payload] = payloads(messages)
    # A complaint asked the knowledge base first: its confidence is recorded (the hub logs the lookup).
    asked = {"confidence": 0.0} if intent == "complaint" else {}
    assert payload == {
        "handoff": True,
        "priority": priority,
        "reason": reason,
        "intent": intent,
        "intent_confidence": 0.95,
        "signals": ["nlu"],
        **asked,
        "decision": {"action": "handoff", "priority": priority, "reason": reason, "signals": ["nlu"], **asked},
    }
    assert events == [SlotSet("clarify_asked", False), SlotSet("last_decision", None), ConversationPaused()]


@pytest.mark.asyncio
async def test_an_unsure_request_for_a_person_is_answered_from_the_knowledge_base(fake_kb: FakeKnowledgeBase) -> None:
    # "i want to build a voice bot": not a request for a person, whatever the NLU half-thinks.
    messages, events = await run(
        ActionHandoff(), tracker(parse("I want my money back for a return", "request_human", 0.45))
    )

    assert fake_kb.requests and payloads(messages)[-1]["decision"]["action"] == "answer"
    assert ConversationPaused() not in events


@pytest.mark.parametrize(
    ("triage", "signals"),
    [
        ({"examples": {"urgent": True, "margin": 0.2}}, ["examples"]),
        ({"examples": {"urgent": False, "margin": -0.1}, "rules": [7]}, ["rules"]),
        ({"examples": {"urgent": True, "margin": 0.2}, "rules": [7]}, ["examples", "rules"]),
    ],
)
@pytest.mark.asyncio
async def test_the_hubs_urgency_signals_hand_off_a_question_as_urgent(
    fake_kb: FakeKnowledgeBase, triage: dict[str, Any], signals: list[str]
) -> None:
    state = tracker(parse("someone took money out of my account", "ask_question", 0.9), metadata={"triage": triage})
    messages, events = await run(ActionAnswerFromKB(), state)

    assert fake_kb.requests == []
    [payload] = payloads(messages)
    assert payload["priority"] == "urgent" and payload["signals"] == signals
    assert payload["decision"]["signals"] == signals
    assert events[-1] == ConversationPaused()


@pytest.mark.asyncio
async def test_a_confident_complaint_the_knowledge_base_answers_is_answered(fake_kb: FakeKnowledgeBase) -> None:
    state = tracker(parse("I forgot my password and it is a disgrace", "complaint", 0.95))
    messages, events = await run(ActionHandoff(), state)

    assert fake_kb.requests
    assert payloads(messages)[-1]["decision"]["action"] == "answer"
    assert ConversationPaused() not in events


@pytest.mark.asyncio
async def test_a_complaint_the_knowledge_base_cannot_answer_is_handed_off_without_asking_back(
    fake_kb: FakeKnowledgeBase,
) -> None:
    messages, events = await run(ActionHandoff(), tracker(parse("your staff were rude to me", "complaint", 0.95)))

    assert fake_kb.requests  # asked first
    [payload] = payloads(messages)
    assert payload["decision"] == {
        "action": "handoff",
        "priority": "high",
        "reason": "complaint",
        "signals": ["nlu"],
        "confidence": 0.0,  # the knowledge base was asked: the hub logs it as a content gap
    }
    assert events[-1] == ConversationPaused()


@pytest.mark.asyncio
async def test_a_complaint_is_handed_off_when_the_knowledge_base_is_down() -> None:
    messages, events = await run(ActionHandoff(), tracker(parse("I forgot my password, a disgrace", "complaint")))

    [payload] = payloads(messages)
    assert payload["priority"] == "high" and payload["reason"] == "kb-unavailable"
    assert events[-1] == ConversationPaused()


@pytest.mark.asyncio
async def test_a_complaint_that_may_be_urgent_is_handed_off_as_urgent() -> None:
    messages, _ = await run(ActionHandoff(), tracker(parse("nobody answers", "complaint", 0.6, urgent_issue=0.35)))

    assert payloads(messages)[0]["priority"] == "urgent"


def test_route() -> None:
    assert route(parse("x", "ask_question")).action == KB
    assert route(parse("x", "nlu_fallback", 0.4)).action == KB
    assert route(parse("x", "out_of_scope", 0.9)).action == KB  # the knowledge base decides what is answerable
    assert route(parse("x", "greet")).action == REPLY
    assert route(parse("x", "complaint")).priority == "high"
    assert route(parse("x", "complaint", 0.5)).action == KB
    assert route(parse("x", "request_human", 0.59), confident_at=0.6).action == KB
    assert route(parse("x", "request_human", 0.6), confident_at=0.6).action == HANDOFF
    assert route(parse("x", "ask_question", 0.6, urgent_issue=0.35)).priority == "urgent"
    assert route(parse("x", "ask_question", 0.7, urgent_issue=0.25)).action == KB
    assert route(parse("x", "ask_question", 0.6, urgent_issue=0.35), escalate_at=1.01).action == KB
    # A "yes" is never escalated: it is the answer to one of the bot's questions.
    assert route(parse("x", "affirm", 0.5, urgent_issue=0.4)).action == REPLY
    assert route(parse("x", "urgent_issue", 0.3)).action == HANDOFF
    assert route(parse("x", "complaint")).kb_first and not route(parse("x", "request_human")).kb_first


def test_examples_that_find_a_message_clearly_not_urgent_overrule_the_nlu_only() -> None:
    calm = {"triage": {"examples": {"urgent": False, "clearly_not_urgent": True}}}
    sure = parse("are your doctors board certified", "urgent_issue", 0.98)
    assert route(sure).priority == "urgent"
    assert route({**sure, "metadata": calm}).action == KB
    assert route({**parse("x", "ask_question", 0.6, urgent_issue=0.5), "metadata": calm}).action == KB
    # The admin's urgent keyword rules are never overruled.
    ruled = {"triage": {"examples": {"urgent": False, "clearly_not_urgent": True}, "rules": [3]}}
    assert route({**sure, "metadata": ruled}).signals == ("rules",)


def test_rasa_alone_does_not_make_a_long_message_none_of_whose_sentences_leans_urgent_urgent() -> None:
    story = parse("<a long e-mail about a meter reading>", "urgent_issue", 0.99)
    assert route(story).priority == "urgent"  # not long, or read by an older hub: as before
    calm = {"triage": {"long_leans_urgent": False}}
    assert route({**story, "metadata": calm}).action == KB
    assert route({**parse("x", "ask_question", 0.6, urgent_issue=0.5), "metadata": calm}).action == KB
    leaning = {"triage": {"long_leans_urgent": True}}
    assert route({**story, "metadata": leaning}).signals == ("nlu",)
    # The other signals are not Rasa's: the examples, the rules and the safety phrases still count.
    ruled = {"triage": {"long_leans_urgent": False, "rules": [3], "safety": ["suicide"]}}
    assert route({**story, "metadata": ruled}).signals == ("rules", "safety")
    by_example = {"triage": {"long_leans_urgent": False, "examples": {"urgent": True, "clearly_not_urgent": False}}}
    assert route({**story, "metadata": by_example}).signals == ("examples",)


def test_the_urgency_classifier_alone_hands_off_and_its_veto_overrules_the_nlu_and_the_examples() -> None:
    def triage(**classifier: Any) -> dict[str, Any]:
        return {"triage": {"classifier": {"probability": 0.5, "urgent": False, "not_urgent": False, **classifier}}}

    stolen = parse("someone nicked my phone and the app has my card saved", "ask_question", 0.99)
    assert route(stolen).action == KB
    sure = {**stolen, "metadata": triage(probability=0.97, urgent=True)}
    assert route(sure).priority == "urgent" and route(sure).signals == ("classifier",)
    unsure = {**stolen, "metadata": triage(probability=0.9)}
    assert route(unsure).action == KB
    # Sure, but of a message the examples find clearly not urgent: as with Rasa's reading, it does not count.
    far = {"triage": {**sure["metadata"]["triage"], "examples": {"urgent": False, "clearly_not_urgent": True}}}
    assert route({**stolen, "metadata": far}).action == KB

    car = parse("what's the best electric car to buy", "urgent_issue", 0.85)
    assert route(car).priority == "urgent"
    vetoed = triage(probability=0.01, not_urgent=True)
    assert route({**car, "metadata": vetoed}).action == KB
    by_example = {"triage": {**vetoed["triage"], "examples": {"urgent": True, "clearly_not_urgent": False}}}
    assert route({**car, "metadata": by_example}).action == KB
    # Between the two bounds the classifier says nothing: the others decide.
    assert route({**car, "metadata": triage(probability=0.3)}).signals == ("nlu",)
    # The admin's urgent keyword rules are never overruled.
    ruled = {"triage": {**vetoed["triage"], "rules": [7]}}
    assert route({**car, "metadata": ruled}).signals == ("rules",)


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
    assert (
        plain_text("## Steps\n\n1. Open **Settings**\n2. Choose [Security](/x)")
        == "Steps. Open Settings. Choose Security."
    )


def test_link_joins_relative_urls_to_the_public_url() -> None:
    assert link("https://hub.example/", "/help/a#b") == "https://hub.example/help/a#b"
    assert link("https://hub.example", "https://other.example/x") == "https://other.example/x"
