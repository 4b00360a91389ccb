"""In-memory BM25 over a collection's chunks (bm25s + Snowball stemming)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import bm25s
import numpy as np
import Stemmer

_WORD = re.compile(r"\w+")

# bm25s' English list plus the words every customer question starts with.
STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN) | frozenset(
    """
    i me my mine myself we us our ours you your yours he him his she her it its they them their
    am is are was were be been being have has had having do does did doing done can could would
    should will shall may might must need needs what which who whom whose when where why how
    this that these those there here a an the and or but if so than too very just also any some
    all each both few more most other such no nor not only own same s t don doesn didn isn aren
    wasn weren won can't cannot about above after again against at before below between by
    during for from in into of off on once out over through to under until up upon with within
    without please hi hello thanks thank get got want wanted like know tell let lets
    """.split()
)


@lru_cache(maxsize=4)
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(language)


def tokenize(text: str, language: str = "english") -> list[str]:
    """Lower-cased, stop-word-free, stemmed word tokens."""
    words = [word for word in _WORD.findall(text.lower()) if word not in STOPWORDS]
    stems: list[str] = _stemmer(language).stemWords(words)
    return stems


class KeywordIndex:
    """BM25 scores over a fixed list of documents; rebuilt, never mutated."""

    def __init__(self, documents: Sequence[str], *, language: str = "english") -> None:
        self.__init_tokens([tokenize(doc, language) for doc in documents], language)

    @classmethod
    def from_tokens(cls, corpus: Sequence[Sequence[str]], *, language: str = "english") -> KeywordIndex:
        """An index over documents already passed through :func:`tokenize`."""
        index = cls.__new__(cls)
        index.__init_tokens(corpus, language)
        return index

    def __init_tokens(self, corpus: Sequence[Sequence[str]], language: str) -> None:
        self.language = language
        self.size = len(corpus)
        self._retriever: bm25s.BM25 | None = None
        if any(corpus):
            retriever = bm25s.BM25()
            # bm25s cannot index an empty document; a placeholder token keeps positions aligned.
            retriever.index([list(tokens) or ["\x00"] for tokens in corpus], show_progress=False)
            self._retriever = retriever

    def search(self, query: str, n: int) -> list[tuple[int, float]]:
        """(document position, score) of the best ``n`` documents with a positive score."""
        if self._retriever is None or n <= 0:
            return []
        tokens = tokenize(query, self.language)
        if not tokens:
            return []
        scores = self._retriever.get_scores(tokens)
        n = min(n, scores.shape[0])
        top = np.argpartition(-scores, n - 1)[:n]
        ranked = top[np.argsort(-scores[top], kind="stable")]
        return [(int(position), float(scores[position])) for position in ranked if scores[position] > 0]
