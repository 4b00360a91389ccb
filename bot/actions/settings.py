"""The action server's settings, from environment variables.

- ``HUB_URL`` (default ``http://127.0.0.1:8080``): where the hub's API is.
- ``HUB_PUBLIC_URL`` (default: ``HUB_URL``): prefix of the "Read more" links
  customers see.
- ``HUB_BOT_CONFIDENCE_THRESHOLD`` (default 0.7): the search confidence at or
  above which the bot answers on its own. The search's model is shifted so that
  0.7 is its chosen operating point (``knowledge_base.search``: leave-one-industry-out
  on the development help centres, 60 % of answerable questions answered right,
  5.8 % of all answered wrongly); higher answers less and more surely.
- ``HUB_BOT_HANDOFF_CONFIDENCE`` (default 0.6): below this NLU confidence a
  request for a person or a complaint goes to the knowledge base first
  (``bot.actions.routing``).
- ``HUB_BOT_URGENT_ESCALATION`` (default 0.3): an ``urgent_issue`` score at or
  above this anywhere in the NLU ranking counts as urgent (``bot.actions.routing``).
- ``HUB_BOT_KB_TIMEOUT`` (seconds, default 5): one search request's limit.
- ``HUB_BOT_API_TOKEN`` (optional): sent as ``Authorization: Bearer`` when
  the hub's search API requires a token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_HUB_URL = "http://127.0.0.1:8080"
DEFAULT_CONFIDENCE_THRESHOLD = 0.7
DEFAULT_KB_TIMEOUT = 5.0
DEFAULT_HANDOFF_CONFIDENCE = 0.6
DEFAULT_URGENT_ESCALATION = 0.3


@dataclass(frozen=True)
class ActionSettings:
    hub_url: str = DEFAULT_HUB_URL
    public_url: str = DEFAULT_HUB_URL
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    kb_timeout: float = DEFAULT_KB_TIMEOUT
    api_token: str | None = None
    handoff_confidence: float = DEFAULT_HANDOFF_CONFIDENCE
    urgent_escalation: float = DEFAULT_URGENT_ESCALATION

    @classmethod
    def from_env(cls) -> ActionSettings:
        # Read on every call rather than at import, so tests and operators can
        # change them without restarting the action server's import.
        hub_url = os.environ.get("HUB_URL", DEFAULT_HUB_URL).rstrip("/")
        return cls(
            hub_url=hub_url,
            public_url=os.environ.get("HUB_PUBLIC_URL", hub_url).rstrip("/"),
            confidence_threshold=float(os.environ.get("HUB_BOT_CONFIDENCE_THRESHOLD", DEFAULT_CONFIDENCE_THRESHOLD)),
            kb_timeout=float(os.environ.get("HUB_BOT_KB_TIMEOUT", DEFAULT_KB_TIMEOUT)),
            api_token=os.environ.get("HUB_BOT_API_TOKEN") or None,
            handoff_confidence=float(os.environ.get("HUB_BOT_HANDOFF_CONFIDENCE", DEFAULT_HANDOFF_CONFIDENCE)),
            urgent_escalation=float(os.environ.get("HUB_BOT_URGENT_ESCALATION", DEFAULT_URGENT_ESCALATION)),
        )
