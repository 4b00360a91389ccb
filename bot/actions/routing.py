"""Which way a parsed message goes: the knowledge base, a person (and how urgently), or a reply.

bot/rasa/data/rules.yml sends each intent to an action; this module is the
action server's half of the decision, and the one place bench/bot_eval.py
reads it from, so the benchmark scores what the bot really does.

The knowledge base decides what is answerable. A message goes to it unless
the NLU is *confident* that it is a request for a person or a complaint
(``HUB_BOT_HANDOFF_CONFIDENCE``), or urgent. Small talk (greetings, thanks,
yes/no) is answered by Rasa's rules before any action runs. Rasa's intents
are trained on general examples plus what this team's knowledge base says it
answers, so an unfamiliar product question lands on ``ask_question`` or
``nlu_fallback`` - both go to the knowledge base - rather than on a handoff.

Urgent means the customer is at risk of harm or loss now. Missing one costs
far more than bringing in a person for a question, so five independent
signals are combined, and the decision records which fired (``signals``):

- ``nlu``: Rasa's ``urgent_issue`` is the top intent, or scores at least
  ``HUB_BOT_URGENT_ESCALATION`` anywhere in the ranking - unless the
  examples find the message *clearly not urgent* (``triage.examples
  .clearly_not_urgent``: less like the urgent examples than 99 % of them
  are, ``bot.triage``), or it is a long message no sentence of which leans
  urgent (``triage.long_leans_urgent`` false, ``hub.bot.triage``). Rasa's
  intent model is sure of itself far from its training data, the examples'
  nearest neighbours are not;
- ``examples``: the hub's nearest-neighbour match against the team's list of
  urgent and not-urgent examples (``bot.triage``), passed in the message
  metadata as ``triage.examples``;
- ``rules``: one of the admin's keyword routing rules with priority urgent
  matched (``triage.rules``);
- ``classifier``: the fine-tuned urgency classifier (``bot.urgency``,
  ``triage.classifier``) is sure it is urgent (probability from 0.95) - unless
  the examples find the message clearly not urgent, as for ``nlu``: trained
  600 steps, its probabilities sit at the extremes, sure of itself on some
  ordinary messages unlike its data. On the development help centres the
  guard took false urgent 0.059 -> 0.049 and missed no urgent message (none
  of the 71 is clearly not urgent, 133 of the 388 others are). Asking more
  of it when it is alone (the examples leaning urgent, a margin >= 0) was
  tried and left out: it also dropped urgent messages unlike every example
  ("a guy we fired yesterday still has admin access and is deleting boards
  as we speak"), which is what the classifier is there to catch. When the
  classifier is sure it is *not* urgent (below 0.1, ``not_urgent``), ``nlu``
  and ``examples`` do not count: both misread ordinary questions far from
  their data, the classifier was trained for the distinction. The admin's
  rules always count;
- ``safety``: the message says its writer may harm themselves, or that a
  life is threatened (``bot.safety``'s phrases, ``triage.safety``). It always
  counts, and the handoff says where to get help now.

A complaint the NLU is confident of is handed off, but the knowledge base is
asked first (``Route.kb_first``): a complaint about something an article
settles ("my order came squashed", "why was I charged twice") is answered
when the search is confident, and the customer's "no, that did not help"
offers a person; otherwise it is handed off at once. A request for a person
always is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.actions.settings import ActionSettings

KB = "kb"
HANDOFF = "handoff"
REPLY = "reply"

KB_INTENTS = frozenset({"ask_question", "nlu_fallback", "out_of_scope"})
HANDOFF_INTENTS = frozenset({"request_human", "complaint", "urgent_issue"})
# intent -> (priority, reason)
HANDOFF_PRIORITY = {
    "urgent_issue": ("urgent", "urgent-issue"),
    "complaint": ("high", "complaint"),
    "request_human": ("normal", "customer-request"),
}
CUSTOMER_REQUEST = ("normal", "customer-request")


@dataclass(frozen=True)
class Route:
    action: str
    priority: str | None = None
    reason: str | None = None
    signals: tuple[str, ...] = field(default=())
    # Answer from the knowledge base if it is confident, else hand off as above.
    kb_first: bool = False


def urgent_escalation_threshold() -> float:
    """``HUB_BOT_URGENT_ESCALATION``, read per call like every action setting."""
    return ActionSettings.from_env().urgent_escalation


def intent_score(parse: Mapping[str, Any], name: str) -> float:
    """The confidence of intent ``name`` in a Rasa parse (top intent or ranking), 0 if absent."""
    top = parse.get("intent") or {}
    if top.get("name") == name:
        return float(top.get("confidence") or 0.0)
    for ranked in parse.get("intent_ranking") or []:
        if ranked.get("name") == name:
            return float(ranked.get("confidence") or 0.0)
    return 0.0


def reads_urgent(parse: Mapping[str, Any], *, escalate_at: float | None = None) -> bool:
    """Whether Rasa reads the text as urgent: ``urgent_issue`` is the top intent, or scores at
    least ``escalate_at`` (default ``HUB_BOT_URGENT_ESCALATION``) anywhere in the ranking. The
    ``nlu`` signal below, and the hub's reading of a long message's sentences
    (``hub.bot.triage``), both ask this."""
    threshold = urgent_escalation_threshold() if escalate_at is None else escalate_at
    name = (parse.get("intent") or {}).get("name")
    return name == "urgent_issue" or intent_score(parse, "urgent_issue") >= threshold


def triage_of(parse: Mapping[str, Any]) -> Mapping[str, Any]:
    """The hub's triage of the message (``metadata.triage``), or an empty mapping."""
    metadata = parse.get("metadata") or {}
    triage = metadata.get("triage") if isinstance(metadata, Mapping) else None
    return triage if isinstance(triage, Mapping) else {}


def urgent_signals(parse: Mapping[str, Any], *, escalate_at: float | None = None) -> tuple[str, ...]:
    """Which of the urgency signals fired for this parse (see the module docstring)."""
    signals = []
    triage = triage_of(parse)
    examples = triage.get("examples")
    examples = examples if isinstance(examples, Mapping) else {}
    classifier = triage.get("classifier")
    classifier = classifier if isinstance(classifier, Mapping) else {}
    vetoed = bool(classifier.get("not_urgent"))
    nlu = reads_urgent(parse, escalate_at=escalate_at)
    # A long message none of whose sentences leans urgent (``hub.bot.triage``): Rasa, which learnt
    # from short messages, is not taken at its word.
    nlu = nlu and triage.get("long_leans_urgent") is not False
    if nlu and not examples.get("clearly_not_urgent") and not vetoed:
        signals.append("nlu")
    if examples.get("urgent") and not vetoed:
        signals.append("examples")
    if classifier.get("urgent") and not examples.get("clearly_not_urgent"):
        signals.append("classifier")
    if triage.get("rules"):
        signals.append("rules")
    if triage.get("safety"):
        signals.append("safety")
    return tuple(signals)


def route(parse: Mapping[str, Any], *, escalate_at: float | None = None, confident_at: float | None = None) -> Route:
    """Where the bot sends a message with this parse (``tracker.latest_message`` or ``/model/parse``)."""
    intent = parse.get("intent") or {}
    name = intent.get("name")
    signals = urgent_signals(parse, escalate_at=escalate_at)
    if signals and (name in KB_INTENTS | HANDOFF_INTENTS or name is None):
        return Route(HANDOFF, *HANDOFF_PRIORITY["urgent_issue"], signals=signals)
    if name in HANDOFF_INTENTS - {"urgent_issue"}:
        threshold = ActionSettings.from_env().handoff_confidence if confident_at is None else confident_at
        if float(intent.get("confidence") or 0.0) >= threshold:
            return Route(HANDOFF, *HANDOFF_PRIORITY[name], signals=("nlu",), kb_first=name == "complaint")
        return Route(KB)  # unsure it wants a person: the knowledge base may well answer it
    if name in KB_INTENTS or name == "urgent_issue" or name is None:
        return Route(KB)
    return Route(REPLY)
