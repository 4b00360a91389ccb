"""Every text the actions send to customers, in one place.

Nothing here names a product or an industry: what the bot can help with comes
from the team's own knowledge base (its categories and article titles).
"""

from __future__ import annotations

# Neutral on purpose: only the hub knows whether anyone is on duty and when the
# team is back, so it appends that promise to this text (hub/bot/promise.py).
HANDOFF = {
    "urgent": "I'm passing you to our team right away.",
    "high": "I'm sorry about this. I'm passing you to our team as a priority.",
    "normal": "I'm passing you to our team.",
}
# Added to an urgent handoff when the customer may harm themselves or a life is threatened (bot.safety).
SAFETY = "If you or someone else is in danger right now, please call your local emergency number."

# A near miss: the knowledge base has articles close to the question, none sure enough.
CLARIFY_WITH_TOPICS = (
    "I'm not sure I've understood. Is your question about {topics}? Tell me a little more and I'll look again."
)
CLARIFY_GENERIC = "I'm not sure I've understood. Could you tell me a little more about what you need?"
# No good answer at all: say what the knowledge base does cover.
NO_ANSWER_WITH_TOPICS = (
    "Sorry, I couldn't find an answer to that in our help centre. I can help with {topics}. "
    "Could you tell me a little more, or ask in other words?"
)
NO_ANSWER_GENERIC = (
    "Sorry, I couldn't find an answer to that in our help centre. Could you tell me a little more, "
    "or ask in other words?"
)
# Asked once already and still no answer: the follow-up action asks whether to bring in a person.
STILL_NO_ANSWER = "Sorry, I still couldn't find an answer to that."

ANSWER_DID_NOT_HELP = "Sorry that didn't answer it."

READ_MORE = "Read more: {url}"
