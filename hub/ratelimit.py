"""Rate limits for public endpoints, with the ``limits`` library.

In memory by default; shared across hub instances when HUB_REDIS_URL is set.
"""

from __future__ import annotations

import time

import limits
from aiohttp import web
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from hub.errors import RateLimited


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        uri = f"async+{redis_url}" if redis_url else "async+memory://"
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri))

    async def check(self, rule: str, *keys: str) -> None:
        """Count one hit; raise ``RateLimited`` (429 with Retry-After) past ``rule``."""
        item = limits.parse(rule)
        if not await self._limiter.hit(item, *keys):
            stats = await self._limiter.get_window_stats(item, *keys)
            raise RateLimited(f"rate limit of {rule} exceeded", retry_after=max(0.0, stats.reset_time - time.time()))


def client_ip(request: web.Request) -> str:
    # Behind a proxy, configure it to set X-Forwarded-For and trust only it;
    # aiohttp's request.remote is the direct peer.
    return request.remote or "unknown"
