"""``action_handoff``: bring in a person and keep the bot quiet until the hub resumes it."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import messages
from bot.actions.routing import CUSTOMER_REQUEST, HANDOFF, route

log = logging.getLogger(__name__)

CLARIFY_SLOT = "clarify_asked"



def hand_off(
    dispatcher: CollectingDispatcher, tracker: Tracker, *, priority: str, reason: str, **details: Any
) -> list[EventType]:
    """Send the handoff text and payload; return the events that pause the conversation.

    The payload is ``{"handoff": true, "priority", "reason", "intent", **details}``.
    """
    intent = (tracker.latest_message or {}).get("intent") or {}
    dispatcher.utter_message(text=messages.HANDOFF[priority])
    dispatcher.utter_message(
        json_message={
            "handoff": True,
            "priority": priority,
            "reason": reason,
            "intent": intent.get("name"),
            "intent_confidence": intent.get("confidence"),
            **details,
        }
    )
    log.info("handoff conversation=%s priority=%s reason=%s", tracker.sender_id, priority, reason)
    return [SlotSet(CLARIFY_SLOT, False), ConversationPaused()]


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        decision = route(tracker.latest_message or {})
        # Not a handoff intent: "yes" to "shall I bring in a person?".
        priority, reason = (decision.priority, decision.reason) if decision.action == HANDOFF else CUSTOMER_REQUEST
        return hand_off(dispatcher, tracker, priority=str(priority), reason=str(reason))
