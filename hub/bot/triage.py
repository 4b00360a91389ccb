"""The hub's triage of a customer message before the bot sees it.

Two urgency signals that do not depend on Rasa's training data, passed to
Rasa as ``metadata.triage`` (``bot.actions.routing`` combines them with the
NLU's own):

- ``examples``: the nearest-neighbour match against the team's urgent and
  not-urgent examples (``bot.triage``), embedded with the knowledge base's
  model; absent while the examples load (a few seconds after start) or when
  the knowledge base is off;
- ``rules``: the admin's enabled keyword routing rules of priority urgent
  that match the text (``hub.tickets.routing``): a team that marks "stolen" urgent
  gets it from the bot too, not only on the ticket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.triage import DEFAULT_EXAMPLES, ExamplesError, UrgentExamples, load_examples
from hub.models import Priority
from hub.tickets import routing

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], Awaitable[Any]]
EmbedQuery = Callable[[str], Awaitable[Any]]
Rules = Callable[[], Awaitable[Any]]


class Triage:
    def __init__(
        self,
        *,
        embed: Embed | None,
        rules: Rules | None,
        embed_query: EmbedQuery | None = None,
        examples_path: Path | None = None,
        max_false_urgent: float = 0.02,
    ) -> None:
        self.embed = embed
        # A message is embedded as the search will embed it (KnowledgeBase.embed_query
        # shares its cache with the search): the bot's search then costs no second pass.
        self.embed_query = embed_query
        self.rules = rules
        self.examples_path = examples_path or DEFAULT_EXAMPLES
        self.max_false_urgent = max_false_urgent
        self.examples: UrgentExamples | None = None

    async def load(self) -> None:
        """Embed and calibrate the examples; a bad file is logged, and the signal stays off."""
        if self.embed is None:
            return
        try:
            urgent, not_urgent = await asyncio.to_thread(load_examples, self.examples_path)
            vectors = await self.embed([*urgent, *not_urgent])
        except ExamplesError as err:
            log.error("urgent examples off: %s", err)
            return
        by_text = dict(zip([*urgent, *not_urgent], vectors, strict=True))
        self.examples = await asyncio.to_thread(
            UrgentExamples,
            urgent,
            not_urgent,
            lambda texts: [by_text[t] for t in texts],
            max_false_urgent=self.max_false_urgent,
        )
        log.info("urgent examples loaded from %s: %s", self.examples_path, self.examples.calibration.as_dict())

    async def __call__(self, text: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.examples is not None and self.embed is not None and text.strip():
            if self.embed_query is not None:
                vector = await self.embed_query(text)
            else:
                [vector] = await self.embed([text])
            result["examples"] = self.examples.match(vector).as_dict()
        if self.rules is not None:
            rules = await self.rules()
            hits = [r for r in routing.keyword_hits(rules, text) if r.priority == Priority.URGENT]
            if hits:
                result["rules"] = [r.id for r in hits]
        return result
