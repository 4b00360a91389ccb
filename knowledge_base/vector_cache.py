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
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from knowledge_base.embeddings import Embedder

# Vectors kept per embedder (384 float32 each for all-MiniLM-L6-v2: 8192 take 12.6 MB).
CACHE_SIZE = 8192
QUERY_CACHE_SIZE = 1024

Embed = Callable[[Sequence[str]], np.ndarray]


class CachedEmbed:
    """An embed function behind a least-recently-used cache of vectors by text; thread-safe.

    Called with texts, it returns their vectors in order; those not cached
    are embedded in one call. ``embed`` MUST be deterministic (as every
    :class:`~knowledge_base.embeddings.Embedder` is).
    """

    def __init__(self, embed: Embed, max_entries: int = CACHE_SIZE) -> None:
        self._embed = embed
        self._max_entries = max_entries
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            found = {text: self._vectors[text] for text in texts if text in self._vectors}
            for text in found:
                self._vectors.move_to_end(text)
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            vectors = np.asarray(self._embed(missing), dtype=np.float32)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    found[text] = vector
                    self._vectors[text] = vector
                while len(self._vectors) > self._max_entries:
                    self._vectors.popitem(last=False)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
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
