"""Which way a parsed message goes: the knowledge base, a person (and how urgently), or a reply.

bot/rasa/data/rules.yml sends each intent to one action; this module is the
action server's half of the decision, and the one place bench/bot_eval.py
reads it from, so the benchmark scores what the bot really does.

Missing an urgent message costs far more than bringing in a person for a
question, so an urgent_issue score of at least ``HUB_BOT_URGENT_ESCALATION``
anywhere in the intent ranking escalates a message that would otherwise go
to the knowledge base or to a normal/high handoff. Set it to 1 to turn that
off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KB = "kb"
HANDOFF = "handoff"
REPLY = "reply"

KB_INTENTS = frozenset({"ask_question", "nlu_fallback"})
HANDOFF_INTENTS = frozenset({"request_human", "complaint", "urgent_issue"})
# intent -> (priority, reason)
HANDOFF_PRIORITY = {
    "urgent_issue": ("urgent", "urgent-issue"),
    "complaint": ("high", "complaint"),
    "request_human": ("normal", "customer-request"),
}
CUSTOMER_REQUEST = ("normal", "customer-request")
DEFAULT_URGENT_ESCALATION = 0.3


@dataclass(frozen=True)
class Route:
    action: str
    priority: str | None = None
    reason: str | None = None


def urgent_escalation_threshold() -> float:
    return float(os.environ.get("HUB_BOT_URGENT_ESCALATION", DEFAULT_URGENT_ESCALATION))


def intent_score(parse: Mapping[str, Any], name: str) -> float:
    """The confidence of intent ``name`` in a Rasa parse (top intent or ranking), 0 if absent."""
    top = parse.get("intent") or {}
    if top.get("name") == name:
        return float(top.get("confidence") or 0.0)
    for ranked in parse.get("intent_ranking") or []:
        if ranked.get("name") == name:
            return float(ranked.get("confidence") or 0.0)
    return 0.0


def route(parse: Mapping[str, Any], *, escalate_at: float | None = None) -> Route:
    """Where the bot sends a message with this parse (``tracker.latest_message`` or ``/model/parse``)."""
    name = (parse.get("intent") or {}).get("name")
    threshold = urgent_escalation_threshold() if escalate_at is None else escalate_at
    if name == "urgent_issue" or (
        name in KB_INTENTS | HANDOFF_INTENTS and intent_score(parse, "urgent_issue") >= threshold
    ):
        return Route(HANDOFF, *HANDOFF_PRIORITY["urgent_issue"])
    if name in HANDOFF_INTENTS:
        return Route(HANDOFF, *HANDOFF_PRIORITY[name])
    if name in KB_INTENTS:
        return Route(KB)
    return Route(REPLY)
