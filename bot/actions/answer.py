"""``action_answer_from_kb``: answer from the knowledge base, ask once, then offer a person.

The decision (``bot.actions.routing.route``) comes first: an urgent message
or a confident request for a person is handed off whichever action Rasa
predicted; a confident complaint is answered only when the knowledge base is
confident, else handed off. Otherwise the knowledge base decides:

- confident (``HUB_BOT_CONFIDENCE_THRESHOLD``): quote the part of the best
  article that answers (the search's ``excerpt``), then the link;
- not sure, first time: a near miss (the top hit at least
  ``CLARIFY_FLOOR``) asks whether the question is about one of the three
  closest articles, by title; no good answer at all says what the bot can
  help with, from the knowledge base's own categories;
- the reply to that question picks one of the titles (names it, or "the
  second one"): that article is the answer, whatever its confidence - the
  customer chose it (``decision.chosen``);
- not sure again: say so and offer a person (``utter_offer_human``; the
  customer's "yes" hands off through ``action_followup``).

Every turn ends with a ``{"decision": {...}}`` payload the hub stores with
the bot's reply: what the bot did, which article, which urgency signals.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import kb_client, messages, topics
from bot.actions.handoff import ANSWER_SLOT, CLARIFY_SLOT, DECISION_SLOT, hand_off
from bot.actions.kb_client import KnowledgeBaseUnavailable, SearchResult
from bot.actions.replies import link, short_reply
from bot.actions.routing import HANDOFF, route
from bot.actions.settings import ActionSettings

log = logging.getLogger(__name__)

OFFER_HUMAN = "utter_offer_human"
# Below this, the top hit is not even a near miss: say what the bot can help with. Chosen on the
# development help centres (bench/bot_domains.py --sets bench/data/domains_dev): answerable questions
# resolved within one clarification 0.701 at 0.35, 0.774 at 0.2, 0.786 at 0.1; 0.2 keeps the list of
# topics for a message unlike every article.
CLARIFY_FLOOR = 0.2
# A clarifying question offers this many article titles; the customer's reply may pick one.
OFFERED = 3
ORDINALS = ({"first", "1", "1st"}, {"second", "2", "2nd"}, {"third", "3", "3rd"})
# A reply this short that names an offered title is the customer's choice, whatever else it finds.
SHORT_REPLY = 8
# The urgency signals a picked title outranks (see answer_from_kb).
READ_OUT_OF_CONTEXT = frozenset({"nlu", "classifier"})
STOP_WORDS = frozenset({"a", "an", "the", "to", "of", "and", "or", "for", "your", "my", "how", "in", "on", "i"})


def user_texts(tracker: Tracker) -> list[str]:
    """The customer's messages in this conversation, oldest first."""
    return [str(e.get("text") or "") for e in tracker.events if e.get("event") == "user"]


def collection_of(tracker: Tracker) -> str:
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    return str(metadata.get("collection") or kb_client.DEFAULT_COLLECTION)


def answer_text(hit: dict[str, Any], public_url: str) -> str:
    """The quoted answer (the search's excerpt, else the passage's first sentences) and its link."""
    excerpt = str(hit.get("excerpt") or "").strip()
    # The excerpt is already the part that answers, within its own limit: quote it whole.
    reply = excerpt if excerpt else short_reply(str(hit.get("text") or ""))
    url = hit.get("url")
    if url:
        # One line break, not a blank line: Rasa splits a text at "\n\n" into
        # separate messages.
        reply = f"{reply}\n{messages.READ_MORE.format(url=link(public_url, str(url)))}".strip()
    return reply


def offered(result: SearchResult) -> list[tuple[str, Any]]:
    """The articles a clarifying question offers: (title, article id) of the ``OFFERED`` closest, titles unique."""
    found: list[tuple[str, Any]] = []
    for hit in result.hits:
        title = str(hit.get("title") or "").strip()
        if title and title not in [t for t, _ in found]:
            found.append((title, hit.get("article_id")))
    return found[:OFFERED]


def clarifying_question(offer: list[tuple[str, Any]]) -> str:
    """Is it about A, B or C? (``offer``: ``offered(result)``)."""
    titles = [title for title, _ in offer]
    if not titles:
        return messages.CLARIFY_GENERIC
    quoted = [f'"{t}"' for t in titles]
    subjects = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return messages.CLARIFY_WITH_TOPICS.format(topics=subjects)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def last_offer(tracker: Tracker) -> list[dict[str, Any]]:
    """The articles the bot's last clarifying question offered ({"title", "article_id"}), if it
    was the bot's last turn with a decision; else none."""
    for event in reversed(tracker.events):
        if event.get("event") != "bot":
            continue
        custom = (event.get("data") or {}).get("custom")
        decision = custom.get("decision") if isinstance(custom, dict) else None
        if not isinstance(decision, dict):
            continue
        if decision.get("action") != "clarify":
            return []
        return [o for o in decision.get("offered") or [] if isinstance(o, dict) and o.get("article_id")]
    return []


def chosen(offer: list[dict[str, Any]], reply: str) -> Any:
    """The article id the customer's reply picks from an offer: it names one title (all of its
    words, and more of them than of the other's), or says which ("the second one", "2");
    None when it picks none or both."""
    words = _words(reply)
    if not offer or not words:
        return None
    ordinal = [i for i, names in enumerate(ORDINALS[: len(offer)]) if names & set(words)]
    if "last" in words:
        ordinal.append(len(offer) - 1)
    if len(set(ordinal)) == 1 and len(words) <= 4:
        return offer[ordinal[0]]["article_id"]
    said = set(words)
    covered = []
    for item in offer:
        title = set(_words(str(item.get("title") or ""))) - STOP_WORDS
        covered.append(len(title & said) / len(title) if title else 0.0)
    best = max(range(len(offer)), key=lambda i: covered[i])
    if covered[best] >= 1.0 and covered.count(covered[best]) == 1:
        return offer[best]["article_id"]
    return None


async def no_answer_text(settings: ActionSettings, collection: str) -> str:
    covered = topics.describe(await topics.topics(settings, collection))
    return messages.NO_ANSWER_WITH_TOPICS.format(topics=covered) if covered else messages.NO_ANSWER_GENERIC


async def answer_from_kb(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
    """The whole decision for one customer message; both actions end up here."""
    parse = tracker.latest_message or {}
    decision = route(parse)
    text = str(parse.get("text") or "").strip()
    clarify_asked = bool(tracker.get_slot(CLARIFY_SLOT))
    # The reply to "is it about A, B or C?" that names one of them: the customer chose. The NLU
    # may read a title as a request for a person ("Contact us"), and the NLU or the classifier, a
    # title alone, as urgent ("Projects, boards and views" was to Rasa on a held-out help centre,
    # "Paying monthly and missed payments" to the classifier on a development one): both read
    # its words out of the question's context. Urgency from the examples or the rules, or in a
    # reply longer than a choice, outranks the choice.
    out_of_context = set(decision.signals) <= READ_OUT_OF_CONTEXT
    urgent = decision.priority == "urgent" and (not out_of_context or len(_words(text)) > SHORT_REPLY)
    offer = last_offer(tracker) if clarify_asked and not urgent else []
    pick = chosen(offer, text)
    if decision.action == HANDOFF and not decision.kb_first and pick is None:
        return hand_off(
            dispatcher,
            tracker,
            priority=str(decision.priority),
            reason=str(decision.reason),
            signals=list(decision.signals),
        )
    settings = ActionSettings.from_env()
    collection = collection_of(tracker)
    try:
        result = await _search(settings, tracker, text, collection, clarify_asked)
    except KnowledgeBaseUnavailable as err:
        log.warning("knowledge base unavailable, handing off: %s", err)
        return hand_off(dispatcher, tracker, priority=decision.priority or "normal", reason="kb-unavailable")
    except Exception:
        # Whatever went wrong, the customer must not be left unanswered.
        log.exception("answer from the knowledge base failed, handing off")
        return hand_off(dispatcher, tracker, priority=decision.priority or "normal", reason="bot-error")

    confident = bool(result.hits) and result.confidence >= settings.confidence_threshold
    chose = False
    if pick is not None and (not confident or len(_words(text)) <= SHORT_REPLY):
        # Answered with the chosen article (a short reply even when it alone finds another
        # article with confidence: a longer one may be a new question).
        picked = await _picked_hit(settings, tracker, collection, result, offer, pick)
        if picked is not None:
            result, confident = SearchResult(query=result.query, confidence=result.confidence, hits=[picked]), True
            chose = True
    if decision.action == HANDOFF and not confident:
        return hand_off(
            dispatcher,
            tracker,
            priority=str(decision.priority),
            reason=str(decision.reason),
            signals=list(decision.signals),
            confidence=result.confidence,
        )
    if confident:
        best = result.hits[0]
        dispatcher.utter_message(text=answer_text(best, settings.public_url))
        dispatcher.utter_message(
            json_message={
                "kb_hits": result.hits,
                "confidence": result.confidence,
                "query": result.query,
                "decision": {
                    "action": "answer",
                    "article_id": best.get("article_id"),
                    "collection": collection,
                    "confidence": result.confidence,
                    # The customer picked it from the titles a clarifying question offered.
                    "chosen": chose,
                },
            }
        )
        return [
            SlotSet(CLARIFY_SLOT, False),
            SlotSet(DECISION_SLOT, "answer"),
            SlotSet(ANSWER_SLOT, {"query": text, "article_id": best.get("article_id"), "collection": collection}),
        ]
    if not clarify_asked:
        near_miss = bool(result.hits) and result.confidence >= CLARIFY_FLOOR
        offer_now = offered(result) if near_miss else []
        text_out = clarifying_question(offer_now) if near_miss else await no_answer_text(settings, collection)
        dispatcher.utter_message(text=text_out)
        dispatcher.utter_message(
            json_message={
                "clarify": True,
                "confidence": result.confidence,
                "decision": {
                    "action": "clarify" if near_miss else "topics",
                    "confidence": result.confidence,
                    "article_ids": [a for _, a in offer_now],
                    "offered": [{"title": t, "article_id": a} for t, a in offer_now],
                },
            }
        )
        return [SlotSet(CLARIFY_SLOT, True), SlotSet(DECISION_SLOT, "clarify" if near_miss else "topics")]
    return offer_human(dispatcher, messages.STILL_NO_ANSWER, confidence=result.confidence)


def offer_human(dispatcher: CollectingDispatcher, lead: str, **details: Any) -> list[EventType]:
    """Say ``lead``, ask whether to bring in a person; the customer's "yes" hands off (action_followup)."""
    dispatcher.utter_message(text=lead)
    dispatcher.utter_message(response=OFFER_HUMAN)
    dispatcher.utter_message(json_message={"decision": {"action": "offer_human", **details}})
    return [SlotSet(CLARIFY_SLOT, False), SlotSet(DECISION_SLOT, "offer_human")]


async def _picked_hit(
    settings: ActionSettings,
    tracker: Tracker,
    collection: str,
    result: SearchResult,
    offer: list[dict[str, Any]],
    article_id: Any,
) -> dict[str, Any] | None:
    """The hit of ``article_id``, the customer's pick from ``offer``: from this turn's search,
    else searched with the question and that article's title (None: not found there)."""
    for hit in result.hits:
        if hit.get("article_id") == article_id:
            return hit
    title = next(str(o.get("title") or "") for o in offer if o.get("article_id") == article_id)
    earlier = user_texts(tracker)[:-1]
    query = f"{earlier[-1]} {title}" if earlier else title
    again = await kb_client.search(settings, query, collection=collection)
    return next((hit for hit in again.hits if hit.get("article_id") == article_id), None)


async def _search(
    settings: ActionSettings, tracker: Tracker, text: str, collection: str, clarify_asked: bool
) -> SearchResult:
    if not text:
        return SearchResult(query="", confidence=0.0)
    result = await kb_client.search(settings, text, collection=collection)
    if clarify_asked and result.confidence < settings.confidence_threshold:
        # The reply to a clarifying question rarely stands alone ("the
        # second one", "yes, on my phone"): search it with the question.
        earlier = user_texts(tracker)[:-1]
        if earlier and earlier[-1].strip():
            # The reply whole, and as much of the question as fits before it.
            room = kb_client.MAX_QUERY_CHARS - len(kb_client.clip(text)) - 1
            question = kb_client.clip(earlier[-1], room) if room > 0 else ""
            combined = await kb_client.search(settings, f"{question} {text}", collection=collection)
            if combined.confidence > result.confidence:
                result = combined
    return result
