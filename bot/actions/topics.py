"""What the bot can help with, in the knowledge base's own words.

``GET {HUB_URL}/api/v1/kb/topics?collection=<name>`` answers
``{"collection", "topics": [{"name", "articles", "titles": [...]}]}``: the
collection's categories, largest first, with their article titles
(articles without a category are grouped under an empty name). The action
server keeps each answer for ``CACHE_SECONDS``; a knowledge base that cannot
be reached gives no topics, and the bot says so without naming any.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from bot.actions.settings import ActionSettings

log = logging.getLogger(__name__)

TOPICS_PATH = "/api/v1/kb/topics"
CACHE_SECONDS = 60.0
MAX_NAMED = 5

_cache: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}


async def topics(settings: ActionSettings, collection: str) -> list[dict[str, Any]]:
    key = (settings.hub_url, collection)
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    headers = {"Accept": "application/json"}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    timeout = aiohttp.ClientTimeout(total=settings.kb_timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            async with session.get(settings.hub_url + TOPICS_PATH, params={"collection": collection}) as response:
                if response.status != 200:
                    raise aiohttp.ClientError(f"topics answered {response.status}")
                payload = await response.json(content_type=None)
        found = [dict(topic) for topic in payload.get("topics") or [] if isinstance(topic, dict)]
    except (asyncio.TimeoutError, aiohttp.ClientError, json.JSONDecodeError, AttributeError) as err:
        log.warning("knowledge-base topics unavailable: %r", err)
        return []
    _cache[key] = (time.monotonic(), found)
    return found


def describe(found: list[dict[str, Any]], limit: int = MAX_NAMED) -> str:
    """ "billing, appointments and prescriptions": categories, else article titles; "" when empty."""
    names = [str(topic.get("name") or "").strip() for topic in found]
    names = [name for name in names if name]
    if not names:
        titles = [str(title).strip() for topic in found for title in topic.get("titles") or []]
        names = [f'"{title}"' for title in titles if title]
    names = names[:limit]
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"
