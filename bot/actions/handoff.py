"""Handing off: bring in a person and keep the bot quiet until the hub resumes it."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import messages

log = logging.getLogger(__name__)

CLARIFY_SLOT = "clarify_asked"
DECISION_SLOT = "last_decision"
ANSWER_SLOT = "last_answer"


def hand_off(
    dispatcher: CollectingDispatcher, tracker: Tracker, *, priority: str, reason: str, **details: Any
) -> list[EventType]:
    """Send the handoff text and payload; return the events that pause the conversation.

    The payload is ``{"handoff": true, "priority", "reason", "intent", **details,
    "decision": {...}}``; ``details`` may carry ``signals``, the urgency
    signals that fired.
    """
    intent = (tracker.latest_message or {}).get("intent") or {}
    text = messages.HANDOFF[priority]
    if "safety" in (details.get("signals") or ()):
        text = f"{text} {messages.SAFETY}"
    dispatcher.utter_message(text=text)
    dispatcher.utter_message(
        json_message={
            "handoff": True,
            "priority": priority,
            "reason": reason,
            "intent": intent.get("name"),
            "intent_confidence": intent.get("confidence"),
            **details,
            "decision": {
                "action": "handoff",
                "priority": priority,
                "reason": reason,
                "signals": list(details.get("signals") or []),
                # Set when the knowledge base was asked first and was not sure (a complaint):
                # the hub logs that lookup as a content gap (hub.kb.searchlog).
                **({"confidence": details["confidence"]} if details.get("confidence") is not None else {}),
            },
        }
    )
    log.info("handoff conversation=%s priority=%s reason=%s", tracker.sender_id, priority, reason)
    return [SlotSet(CLARIFY_SLOT, False), SlotSet(DECISION_SLOT, None), ConversationPaused()]
