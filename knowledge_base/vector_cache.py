"""Vectors of texts kept by text, in front of an embedder: what the excerpt embeds.

A search with an excerpt embeds the units (sentences, list items, table
rows) of its top chunk; that costs several times the query's embedding, and
a help centre's questions keep landing on the same few sections. So the
units are embedded once per process and kept, least recently used first
out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Generic, TypeVar

import numpy as np

from knowledge_base.embeddings import Embedder

# Vectors kept per embedder (384 float32 each for all-MiniLM-L6-v2: 8192 take 12.6 MB).
CACHE_SIZE = 8192
QUERY_CACHE_SIZE = 1024

Embed = Callable[[Sequence[str]], np.ndarray]
V = TypeVar("V")


class TextCache(Generic[V]):
    """Values computed from texts, kept by text; least recently used out once their summed
    ``cost`` (1 each by default) passes ``max_cost``, the newest always kept; thread-safe.

    :meth:`values` computes those not cached in one call of ``compute``, which MUST
    be deterministic and return one value per text, in order. A text another thread is
    computing at that moment is waited for, not computed twice: eight customers' first
    searches landing at once on a help centre written a moment before, or a search landing
    on the article a warm is embedding, share the work instead of multiplying it. A thread
    computes the texts it claimed before it waits for any other's, so no two wait on each other.
    """

    def __init__(
        self, compute: Callable[[Sequence[str]], Sequence[V]], max_cost: int, cost: Callable[[V], int] | None = None
    ) -> None:
        self._compute = compute
        self._max_cost = max_cost
        self._cost = cost or (lambda _value: 1)
        self._kept: OrderedDict[str, V] = OrderedDict()
        self._spent = 0
        self._lock = threading.Lock()
        # Texts being computed, each with the event its thread sets when done (kept or failed).
        self._pending: dict[str, threading.Event] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, text: object) -> bool:
        with self._lock:
            return text in self._kept

    def values(self, texts: Sequence[str]) -> dict[str, V]:
        found: dict[str, V] = {}
        wanted = list(dict.fromkeys(texts))
        while wanted:
            claimed = threading.Event()
            with self._lock:
                for text in wanted:
                    if text in self._kept:
                        found[text] = self._kept[text]
                        self._kept.move_to_end(text)
                missing = [text for text in wanted if text not in found]
                theirs = {self._pending[text] for text in missing if text in self._pending}
                mine = [text for text in missing if text not in self._pending]
                for text in mine:
                    self._pending[text] = claimed
            if mine:
                try:
                    computed = dict(zip(mine, self._compute(mine), strict=True))
                    self.put(computed)
                    found.update(computed)
                finally:
                    with self._lock:
                        for text in mine:
                            if self._pending.get(text) is claimed:
                                del self._pending[text]
                    claimed.set()
            for event in theirs:
                event.wait()
            # Another thread's texts: read from the cache next round, or claimed and computed
            # here when its computation failed or a full cache pushed them out already.
            wanted = [text for text in missing if text not in found]
        return found

    def put(self, computed: Mapping[str, V]) -> None:
        """Keep values computed elsewhere (as ``compute`` would have computed them)."""
        with self._lock:
            for text, value in computed.items():
                if text in self._kept:  # another thread computed it meanwhile
                    self._spent -= self._cost(self._kept[text])
                self._kept[text] = value
                self._kept.move_to_end(text)
                self._spent += self._cost(value)
            while self._spent > self._max_cost and len(self._kept) > 1:
                _, dropped = self._kept.popitem(last=False)
                self._spent -= self._cost(dropped)


class CachedEmbed(TextCache[np.ndarray]):
    """An embed function behind a least-recently-used cache of vectors by text; thread-safe.

    Called with texts, it returns their vectors in order; those not cached
    are embedded in one call. ``embed`` MUST be deterministic (as every
    :class:`~knowledge_base.embeddings.Embedder` is).
    """

    def __init__(self, embed: Embed, max_entries: int = CACHE_SIZE) -> None:
        super().__init__(lambda texts: list(np.asarray(embed(texts), dtype=np.float32)), max_entries)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        found = self.values(texts)
        return np.stack([found[text] for text in texts])


@lru_cache(maxsize=4)
def cached_embed(embedder: Embedder) -> CachedEmbed:
    """The cache in front of ``embedder.embed_documents``, one per embedder object (kept for the last 4)."""
    return CachedEmbed(embedder.embed_documents)


@lru_cache(maxsize=4)
def cached_query_embed(embedder: Embedder) -> CachedEmbed:
    """The cache in front of ``embedder.embed_query``: a customer's message is embedded once,
    whether the hub's triage or the bot's search asks first."""
    return CachedEmbed(lambda texts: np.stack([embedder.embed_query(text) for text in texts]), QUERY_CACHE_SIZE)
