"""Every text the actions send to customers, in one place."""

from __future__ import annotations

HANDOFF = {
    "urgent": "I'm connecting you with a member of our team right away. Someone will be with you shortly.",
    "high": "I'm sorry about this. I'm connecting you with a member of our team, who will pick this up as a priority.",
    "normal": "I'm connecting you with a member of our team. They'll reply here as soon as they can.",
}

CLARIFY_GENERIC = "I'm not sure I've understood. Could you tell me a little more about what you need?"
CLARIFY_WITH_TOPICS = (
    "I'm not sure I've understood. Is your question about {topics}? Tell me a little more and I'll look again."
)

READ_MORE = "Read more: {url}"
