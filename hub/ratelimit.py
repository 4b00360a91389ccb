"""The hub's one rate limiter: keyed limits that raise ``RateLimited`` (429 + Retry-After).

A rule is either
- a ``limits`` rule string such as ``"60/minute"``: a moving window, in
  memory by default and shared across hub instances when HUB_REDIS_URL is set
  (public HTTP endpoints: the knowledge-base search), ``await check(rule, *keys)``;
- a ``TokenBuckets(rate, burst)``: token buckets in this process, refilled
  ``rate`` tokens a second up to ``burst``, with fractional costs and refunds
  (the web chat's frames: a window cannot refill in under a second or charge
  a quarter hit, and a socket lives in one process anyway),
  ``take(rule, *keys, cost=...)`` -> seconds to wait, ``refund``, ``prune``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import limits
from aiohttp import web
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from hub.errors import RateLimited

# Rules are a handful of constant strings; parse each once, not on every request.
_parse_rule = functools.lru_cache(maxsize=64)(limits.parse)


@dataclass(frozen=True, slots=True)
class TokenBuckets:
    """A rule: ``rate`` tokens a second, at most ``burst`` saved up, one bucket per key."""

    rate: float
    burst: int


class TokenBucket:
    __slots__ = ("burst", "clock", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()

    def take(self, cost: float = 1.0) -> float:
        """0 when allowed (and the tokens are spent), else seconds until it would be."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate if self.rate > 0 else float("inf")

    def idle(self) -> bool:
        """Full again: forgetting it changes nothing."""
        return self.tokens + (self.clock() - self.updated) * self.rate >= self.burst


class RateLimiter:
    def __init__(self, redis_url: str | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._storage_uri = f"async+{redis_url}" if redis_url else "async+memory://"
        # Made on first use: a limiter with bucket rules only never opens a storage.
        self._windows: MovingWindowRateLimiter | None = None
        self.clock = clock
        self._buckets: dict[tuple[TokenBuckets, tuple[str, ...]], TokenBucket] = {}

    async def check(self, rule: str, *keys: str) -> None:
        """Count one hit; raise ``RateLimited`` (429 with Retry-After) past ``rule``."""
        windows, item = self._window(), _parse_rule(rule)
        if not await windows.hit(item, *keys):
            stats = await windows.get_window_stats(item, *keys)
            raise RateLimited(f"rate limit of {rule} exceeded", retry_after=max(0.0, stats.reset_time - time.time()))

    async def hit(self, rule: str, *keys: str) -> None:
        """Count one hit and never raise (a failure counted after the fact: a wrong password)."""
        await self._window().hit(_parse_rule(rule), *keys)

    async def blocked(self, rule: str, *keys: str) -> float | None:
        """Seconds until ``keys`` may try again under ``rule``, or None while
        allowed; counts nothing (``hit`` does, e.g. only for failures)."""
        windows, item = self._window(), _parse_rule(rule)
        if await windows.test(item, *keys):
            return None
        stats = await windows.get_window_stats(item, *keys)
        return max(1.0, stats.reset_time - time.time())

    def _window(self) -> MovingWindowRateLimiter:
        if self._windows is None:
            # limits' async Redis storage defaults to the coredis client; the hub has redis-py.
            options = {"implementation": "redispy"} if self._storage_uri.startswith("async+redis") else {}
            self._windows = MovingWindowRateLimiter(storage_from_string(self._storage_uri, **options))
        return self._windows

    def take(self, rule: TokenBuckets, *keys: str, cost: float = 1.0) -> float:
        """Spend ``cost`` from the bucket of ``keys``: 0 when allowed, else seconds until it would be.

        Synchronous, so a caller can check and refund with no suspension point between.
        """
        bucket = self._buckets.get((rule, keys))
        if bucket is None:
            bucket = self._buckets[rule, keys] = TokenBucket(rule.rate, rule.burst, self.clock)
        return bucket.take(cost)

    def refund(self, rule: TokenBuckets, *keys: str, cost: float = 1.0) -> None:
        """Give back what ``take`` spent when a later rule refused the same request."""
        bucket = self._buckets.get((rule, keys))
        if bucket is not None:
            bucket.tokens = min(bucket.burst, bucket.tokens + cost)

    def prune(self) -> int:
        """Forget the buckets that are full again; how many went."""
        idle = [key for key, bucket in self._buckets.items() if bucket.idle()]
        for key in idle:
            del self._buckets[key]
        return len(idle)

    def __len__(self) -> int:
        """Token buckets held now (the moving windows live in ``limits``' storage)."""
        return len(self._buckets)


def client_ip(request: web.Request) -> str:
    # The direct peer, or behind a proxy listed in HUB_TRUSTED_PROXIES the
    # client it forwarded for (hub/proxy.py rewrote request.remote).
    return request.remote or "unknown"
