"""The rasa_sdk action server: answer from the knowledge base, or hand off to a person.

    HUB_URL=http://127.0.0.1:8080 .venv/bin/python -m rasa_sdk --actions bot.actions --port 5055

Rasa (bot/rasa/endpoints.yml, ``ACTION_ENDPOINT_URL=http://127.0.0.1:5055/webhook``)
calls two actions:

``action_answer_from_kb``
    Searches ``GET {HUB_URL}/api/v1/kb/search?q=<text>&k=3&collection=<c>``
    (``collection`` from the message metadata, else ``default``). At or above
    ``HUB_BOT_CONFIDENCE_THRESHOLD`` it sends the best passage, shortened,
    with "Read more: {HUB_PUBLIC_URL}{url}", then the custom payload
    ``{"kb_hits": [...], "confidence": x, "query": q}``. Below it, it asks one
    clarifying question (payload ``{"clarify": true, "confidence": x}``, slot
    ``clarify_asked``); unsure again, or the knowledge base unreachable, it
    hands off.

``action_handoff``
    Tells the customer a person is coming and sends ``{"handoff": true,
    "priority": "urgent" | "high" | "normal", "reason": ..., "intent": ...,
    "intent_confidence": ...}``, then pauses the conversation
    (``ConversationPaused``): Rasa stays silent until the hub appends
    ``resume`` (and ``action_listen``) to the tracker. Priority and reason:
    urgent_issue (or an urgent_issue score >= ``HUB_BOT_URGENT_ESCALATION``,
    see ``bot.actions.routing``) -> urgent / ``urgent-issue``; complaint ->
    high / ``complaint``; request_human or "yes" to the bot's offer -> normal
    / ``customer-request``. From ``action_answer_from_kb``: normal /
    ``low-confidence`` (payload adds ``confidence``), ``kb-unavailable``, or
    ``bot-error``.

In the REST channel's reply a payload arrives as ``{"custom": {...}}`` after
the text it belongs to. Settings are environment variables, read per call:
see ``bot.actions.settings``.
"""

from bot.actions.answer import ActionAnswerFromKB
from bot.actions.handoff import ActionHandoff

__all__ = ["ActionAnswerFromKB", "ActionHandoff"]
