"""The rasa_sdk action server: answer from the knowledge base, or hand off to a person.

    HUB_URL=http://127.0.0.1:8080 .venv/bin/python -m rasa_sdk --actions bot.actions --port 5055

Rasa (bot/rasa/endpoints.yml, ``ACTION_ENDPOINT_URL=http://127.0.0.1:5055/webhook``)
calls three actions (``action_followup`` reads a "yes" or "no" against
what the bot did last), and all end in one decision (``bot.actions.routing``):
urgent (any of three signals: Rasa's urgent_issue, the hub's nearest-neighbour
match against the team's urgent examples, an admin's urgent keyword rule) or a
request for a person / complaint the NLU is confident of -> hand off;
everything else -> the knowledge base decides.

``action_answer_from_kb``
    Searches ``GET {HUB_URL}/api/v1/kb/search?q=<text>&k=3&excerpt=1&collection=<c>``
    (``collection`` from the message metadata, else ``default``). At or above
    ``HUB_BOT_CONFIDENCE_THRESHOLD`` it quotes the part of the best article
    that answers, with "Read more: {HUB_PUBLIC_URL}{url}", then the payload
    ``{"kb_hits": [...], "confidence": x, "query": q, "decision": {...}}``.
    Below it, it asks once (slot ``clarify_asked``): a near miss asks whether
    the question is about the two closest titles; no good answer says what
    the bot can help with, from the knowledge base's categories
    (``GET /api/v1/kb/topics``). Unsure again, it offers a person
    (``utter_offer_human``; "yes" hands off).

``action_handoff``
    For a handoff intent: the same decision (a request for a person or a
    complaint the NLU is unsure of goes to the knowledge base). For "yes" to
    the offer of a person: hands off. A handoff tells the customer a person
    is coming and sends ``{"handoff": true, "priority": "urgent" | "high" |
    "normal", "reason": ..., "intent": ..., "signals": [...]}``, then pauses
    the conversation (``ConversationPaused``): Rasa stays silent until the
    hub appends ``resume`` (and ``action_listen``) to the tracker. Reasons:
    ``urgent-issue``, ``complaint``, ``customer-request``, ``kb-unavailable``,
    ``bot-error``.

Every turn's payload carries ``decision`` (``action``: answer, clarify,
topics, offer_human or handoff; ``article_id``; ``signals``), which the hub
keeps with the bot's reply. In the REST channel's reply a payload arrives as
``{"custom": {...}}`` after the text it belongs to. Settings are environment
variables, read per call: see ``bot.actions.settings``.
"""

from bot.actions.actions import ActionAnswerFromKB, ActionFollowup, ActionHandoff

__all__ = ["ActionAnswerFromKB", "ActionFollowup", "ActionHandoff"]
