"""'Was this helpful?' votes: the store contract and an in-memory store."""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable


@runtime_checkable
class VoteStore(Protocol):
    """Where the portal keeps helpfulness votes.

    ``record`` MUST keep at most one vote per (collection, article_id,
    voter_key): a second vote from the same voter replaces the first.
    ``tally`` returns ``(yes, no)`` for an article, ``(0, 0)`` when it has no
    votes. Both may be called concurrently.
    """

    async def record(self, collection: str, article_id: str, helpful: bool, voter_key: str) -> None: ...

    async def tally(self, collection: str, article_id: str) -> tuple[int, int]: ...


class InMemoryVoteStore:
    """A VoteStore for tests and stand-alone use; forgets everything on restart."""

    def __init__(self) -> None:
        self._votes: dict[tuple[str, str], dict[str, bool]] = {}
        self._lock = asyncio.Lock()

    async def record(self, collection: str, article_id: str, helpful: bool, voter_key: str) -> None:
        async with self._lock:
            self._votes.setdefault((collection, article_id), {})[voter_key] = helpful

    async def tally(self, collection: str, article_id: str) -> tuple[int, int]:
        votes = self._votes.get((collection, article_id), {})
        yes = sum(1 for helpful in votes.values() if helpful)
        return yes, len(votes) - yes
