"""How much of a question an article covers, word by word.

A sentence vector averages a whole question: "can I pay with bitcoin?" sits
about as close to a payment-methods article that never names bitcoin as
"can I pay with PayPal?" does to one that names PayPal. Coverage reads the
question word by word instead (BERTScore's recall, Zhang et al. 2020):

    coverage(q, a) = sum over content words w of q: idf(w) * best(w, a)  /  sum idf(w)

where ``best(w, a)`` is the mean over the word's pieces of the best cosine
between the piece's contextual vector and any word piece of the article's
text chunks that the search's rankers returned (title, heading trail and
text, as BM25 reads them; ``knowledge_base.search``), from the same model's
last layer before pooling (:class:`~knowledge_base.embeddings.TokenEmbedder`).
Content words are those BM25 keeps (stop words left out); ``idf`` is BM25's
over the collection's chunks, from the stems the keyword index already holds,
so a word every article uses weighs little and a rare one ("bitcoin", an
error code) much. A word the collection never uses gets the largest idf.

The search reads it for its first few articles and re-orders them by it
(``knowledge_base.search``, which says why the confidence does not read it).

Token vectors are kept by text in a least-recently-used cache bounded by
token count (``TOKEN_CACHE_TOKENS``: 384 float16 each, 100,000 take 77 MB):
a help centre's questions keep landing on the same articles, and the
knowledge base warms a small help centre's after each write
(``KnowledgeBase(warm=True)``). A question's come from the forward pass that
embeds it for the search (``TokenEmbedder.embed_query_tokens``) and are kept
in a cache of their own, so questions never push articles out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np

from knowledge_base.embeddings import TokenEmbedder, TokenVectors
from knowledge_base.keyword import tokenize
from knowledge_base.vector_cache import TextCache

TOKEN_CACHE_TOKENS = 100_000
# Customers' questions are kept apart (``cached_query_tokens``), so they never push out articles'.
QUERY_TOKEN_CACHE_TOKENS = 20_000


class Idf:
    """BM25's inverse document frequency of stems over a collection's chunks."""

    def __init__(self, documents: Iterable[Sequence[str]]) -> None:
        frequency: Counter[str] = Counter()
        size = 0
        for stems in documents:
            size += 1
            frequency.update(set(stems))
        self.size = size
        self._frequency = frequency

    def __call__(self, stem: str) -> float:
        df = self._frequency.get(stem, 0)
        return math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))


def content_words(tokens: TokenVectors) -> list[tuple[str, list[int]]]:
    """The question's words BM25 would keep: (stem, positions of its pieces)."""
    words: list[tuple[str, list[int]]] = []
    current: list[int] = []
    text = ""

    def close() -> None:
        if current:
            stems = tokenize(text)
            if stems:
                words.append((stems[0], list(current)))

    for position, (piece, start) in enumerate(zip(tokens.pieces, tokens.starts, strict=True)):
        if start:
            close()
            current, text = [position], piece
        else:
            current.append(position)
            text += piece
    close()
    return words


def coverage(question: TokenVectors, article: Sequence[TokenVectors], idf: Callable[[str], float]) -> float | None:
    """See the module docstring; None when the question has no content word or the article no tokens."""
    words = content_words(question)
    rows = [tokens.vectors for tokens in article if len(tokens.pieces)]
    if not words or not rows:
        return None
    best = (question.vectors.astype(np.float32) @ np.concatenate(rows).astype(np.float32).T).max(axis=1)
    weights = np.array([idf(stem) for stem, _ in words])
    scores = np.array([float(best[positions].mean()) for _, positions in words])
    total = float(weights.sum())
    return float((weights * scores).sum() / total) if total > 0 else None


class TokenCache(TextCache[TokenVectors]):
    """Token vectors by text in front of ``embed_tokens``, least recently used out once
    more than ``max_tokens`` pieces are kept; thread-safe."""

    def __init__(self, embed_tokens: Callable[[Sequence[str]], list[TokenVectors]], max_tokens: int) -> None:
        super().__init__(embed_tokens, max_tokens, cost=lambda tokens: len(tokens.pieces))

    def __call__(self, texts: Sequence[str]) -> list[TokenVectors]:
        found = self.values(texts)
        return [found[text] for text in texts]


@lru_cache(maxsize=4)
def cached_tokens(embedder: TokenEmbedder) -> TokenCache:
    """The cache in front of ``embedder.embed_tokens`` for articles' texts, one per embedder
    object (kept for the last 4)."""
    return TokenCache(embedder.embed_tokens, TOKEN_CACHE_TOKENS)


@lru_cache(maxsize=4)
def cached_query_tokens(embedder: TokenEmbedder) -> TokenCache:
    """The same for questions. The knowledge base fills it as it embeds a question
    (``embed_query_tokens``: one forward pass for its vector and its tokens)."""
    return TokenCache(embedder.embed_tokens, QUERY_TOKEN_CACHE_TOKENS)


def scorer(embedder: TokenEmbedder, query: str, idf: Callable[[str], float]) -> Callable[[Sequence[str]], float | None]:
    """Texts of an article (its chunks as BM25 reads them) -> their coverage of ``query`` (None
    without text), for the search to call."""
    cache = cached_tokens(embedder)
    question: list[TokenVectors] = []

    def covered(texts: Sequence[str]) -> float | None:
        if not texts:
            return None
        if not question:
            question.append(cached_query_tokens(embedder)([query])[0])
        return coverage(question[0], cache(list(texts)), idf)

    return covered
