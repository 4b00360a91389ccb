"""The hub's knowledge-base search API, as the action server sees it.

``GET {HUB_URL}/api/v1/kb/search?q=<text>&k=3&excerpt=1&collection=<name>`` answers
``{"query": str, "confidence": float 0..1, "hits": [{"article_id", "title",
"heading", "anchor", "text", "score", "url"}]}`` with hits best first.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.actions.settings import ActionSettings

SEARCH_PATH = "/api/v1/kb/search"
DEFAULT_COLLECTION = "default"
TOP_K = 3
# The search API's limit on ``q``, whitespace collapsed (knowledge_base.service.MAX_QUERY_CHARS): the
# hub sends the bot a long message as the search reads it, within it (KnowledgeBase.as_searched).
MAX_QUERY_CHARS = 1000


def clip(text: str, limit: int = MAX_QUERY_CHARS) -> str:
    """``text`` with its whitespace collapsed and, past ``limit`` characters, cut at a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    return cut.rsplit(" ", 1)[0] if " " in cut else text[:limit]


class KnowledgeBaseUnavailable(Exception):
    """The search API could not be reached or gave no usable answer."""


@dataclass(frozen=True)
class SearchResult:
    query: str
    confidence: float
    hits: list[dict[str, Any]] = field(default_factory=list)


async def search(
    settings: ActionSettings, query: str, *, collection: str = DEFAULT_COLLECTION, k: int = TOP_K
) -> SearchResult:
    """One search; raises KnowledgeBaseUnavailable on any transport, HTTP or format error."""
    headers = {"Accept": "application/json"}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    params = {"q": clip(query), "k": str(k), "collection": collection, "excerpt": "1"}
    timeout = aiohttp.ClientTimeout(total=settings.kb_timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            async with session.get(settings.hub_url + SEARCH_PATH, params=params) as response:
                if response.status != 200:
                    body = (await response.text())[:200]
                    raise KnowledgeBaseUnavailable(f"search answered {response.status}: {body}")
                payload = await response.json(content_type=None)
    except (asyncio.TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as err:
        raise KnowledgeBaseUnavailable(f"search failed: {err!r}") from err
    try:
        hits = [dict(hit) for hit in payload.get("hits") or []]
        return SearchResult(query=str(payload.get("query", query)), confidence=float(payload["confidence"]), hits=hits)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        # Its shape only: the answer echoes the customer's question, and this
        # error is logged at WARNING.
        shape = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise KnowledgeBaseUnavailable(f"unexpected search answer ({type(err).__name__}): {shape}") from err
