"""``action_answer_from_kb``: answer from the knowledge base, ask once, or hand off."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import kb_client, messages
from bot.actions.handoff import CLARIFY_SLOT, hand_off
from bot.actions.kb_client import KnowledgeBaseUnavailable, SearchResult
from bot.actions.replies import link, short_reply
from bot.actions.routing import HANDOFF, route
from bot.actions.settings import ActionSettings

log = logging.getLogger(__name__)


def user_texts(tracker: Tracker) -> list[str]:
    """The customer's messages in this conversation, oldest first."""
    return [str(e.get("text") or "") for e in tracker.events if e.get("event") == "user"]


def collection_of(tracker: Tracker) -> str:
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    return str(metadata.get("collection") or kb_client.DEFAULT_COLLECTION)


def answer_text(hit: dict[str, Any], public_url: str) -> str:
    reply = short_reply(str(hit.get("text") or ""))
    url = hit.get("url")
    if url:
        # One line break, not a blank line: Rasa splits a text at "\n\n" into
        # separate messages.
        reply = f"{reply}\n{messages.READ_MORE.format(url=link(public_url, str(url)))}".strip()
    return reply


def clarifying_question(result: SearchResult) -> str:
    titles: list[str] = []
    for hit in result.hits:
        title = str(hit.get("title") or "").strip()
        if title and title not in titles:
            titles.append(title)
    if not titles:
        return messages.CLARIFY_GENERIC
    topics = " or ".join(f'"{t}"' for t in titles[:2])
    return messages.CLARIFY_WITH_TOPICS.format(topics=topics)


class ActionAnswerFromKB(Action):
    def name(self) -> str:
        return "action_answer_from_kb"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        decision = route(tracker.latest_message or {})
        if decision.action == HANDOFF:
            # A question that may well be urgent ("why was I billed twice?").
            return hand_off(dispatcher, tracker, priority=str(decision.priority), reason=str(decision.reason))
        settings = ActionSettings.from_env()
        text = str((tracker.latest_message or {}).get("text") or "").strip()
        clarify_asked = bool(tracker.get_slot(CLARIFY_SLOT))
        collection = collection_of(tracker)
        try:
            result = await self._search(settings, tracker, text, collection, clarify_asked)
        except KnowledgeBaseUnavailable as err:
            log.warning("knowledge base unavailable, handing off: %s", err)
            return hand_off(dispatcher, tracker, priority="normal", reason="kb-unavailable")
        except Exception:
            # Whatever went wrong, the customer must not be left unanswered.
            log.exception("answer from the knowledge base failed, handing off")
            return hand_off(dispatcher, tracker, priority="normal", reason="bot-error")

        if result.hits and result.confidence >= settings.confidence_threshold:
            dispatcher.utter_message(text=answer_text(result.hits[0], settings.public_url))
            dispatcher.utter_message(
                json_message={"kb_hits": result.hits, "confidence": result.confidence, "query": result.query}
            )
            return [SlotSet(CLARIFY_SLOT, False)]
        if not clarify_asked:
            dispatcher.utter_message(text=clarifying_question(result))
            dispatcher.utter_message(json_message={"clarify": True, "confidence": result.confidence})
            return [SlotSet(CLARIFY_SLOT, True)]
        return hand_off(
            dispatcher, tracker, priority="normal", reason="low-confidence", confidence=result.confidence
        )

    async def _search(
        self, settings: ActionSettings, tracker: Tracker, text: str, collection: str, clarify_asked: bool
    ) -> SearchResult:
        if not text:
            return SearchResult(query="", confidence=0.0)
        result = await kb_client.search(settings, text, collection=collection)
        if clarify_asked and result.confidence < settings.confidence_threshold:
            # The reply to a clarifying question rarely stands alone ("the
            # blue one", "yes, for my jacket"): search it with the question.
            earlier = user_texts(tracker)[:-1]
            if earlier and earlier[-1].strip():
                combined = await kb_client.search(settings, f"{earlier[-1]} {text}", collection=collection)
                if combined.confidence > result.confidence:
                    result = combined
        return result
