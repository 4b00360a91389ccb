"""The custom actions Rasa calls (bot/rasa/domain.yml); all end in one decision."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import messages
from bot.actions.answer import answer_from_kb, offer_human
from bot.actions.handoff import ANSWER_SLOT, DECISION_SLOT, hand_off
from bot.actions.routing import CUSTOMER_REQUEST


class ActionAnswerFromKB(Action):
    """Rasa predicts it for questions, unknown wording and off-topic messages."""

    def name(self) -> str:
        return "action_answer_from_kb"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        return await answer_from_kb(dispatcher, tracker)


class ActionHandoff(Action):
    """Rasa predicts it for a handoff intent (request_human, complaint, urgent_issue)."""

    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        # A request for a person or a complaint the NLU is not sure of goes to
        # the knowledge base instead; urgency hands off whatever the intent.
        return await answer_from_kb(dispatcher, tracker)


class ActionFollowup(Action):
    """A "yes" or "no" right after the bot answered, asked back or offered a person.

    After an answer: "yes" is glad to help, "no" offers a person; both send
    ``{"kb_feedback": {"helpful", "query", "article_id", "collection"}}``, the
    customer's vote on the answer (the hub offers a helpful question to an
    admin as a new phrasing of the article). After a clarifying question: the
    knowledge base is searched again with the question and the reply. After
    the offer of a person: "yes" hands off, "no" asks for other words.
    """

    def name(self) -> str:
        return "action_followup"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        helpful = ((tracker.latest_message or {}).get("intent") or {}).get("name") == "affirm"
        last = tracker.get_slot(DECISION_SLOT)
        if last == "answer":
            answered = tracker.get_slot(ANSWER_SLOT) or {}
            if isinstance(answered, dict) and answered.get("article_id"):
                dispatcher.utter_message(json_message={"kb_feedback": {"helpful": helpful, **answered}})
            if helpful:
                dispatcher.utter_message(response="utter_glad_to_help")
                return [SlotSet(DECISION_SLOT, None)]
            return offer_human(dispatcher, messages.ANSWER_DID_NOT_HELP)
        if last == "offer_human":
            if helpful:
                return hand_off(dispatcher, tracker, priority=CUSTOMER_REQUEST[0], reason=CUSTOMER_REQUEST[1])
            dispatcher.utter_message(response="utter_rephrase")
            return [SlotSet(DECISION_SLOT, None)]
        if last in ("clarify", "topics"):
            return await answer_from_kb(dispatcher, tracker)
        dispatcher.utter_message(response="utter_how_can_help")
        return [SlotSet(DECISION_SLOT, None)]
