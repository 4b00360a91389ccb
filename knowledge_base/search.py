"""Hybrid ranking: semantic and BM25 rankings fused by reciprocal rank fusion.

Both rankers return up to ``max(30, 4k)`` chunks. An article's rank in a
ranker is the rank of its best chunk, counted in chunks (an article behind
three chunks of another is fourth, not second). The rankings are fused with
weighted RRF, ``score(a) = sum_r w_r / (RRF_K + rank_r(a))`` with 1-based
ranks, the semantic ranker weighted 2 and BM25 1 - on paraphrased customer
questions meaning matters more than shared words, while BM25 still lifts
exact terms (error codes, product names, "VAT") the model blurs. Each
article is shown through its best chunk (highest chunk-level RRF score);
``SearchHit.score`` is the article's score divided by the maximum (first in
both rankings), so it lies in [0, 1].

Confidence - how likely the top hit answers the question - is::

    confidence = strength * (AGREEMENT_FLOOR + (1 - AGREEMENT_FLOOR) * agreement)

``strength`` ramps the cosine similarity of the top article's best chunk
linearly from 0 at ``SIMILARITY_FLOOR`` (0.30) to 1 at ``SIMILARITY_CEILING``
(0.70); ``agreement`` is 1 when both rankers put that article first, 0.5 when
both have it in their top 3, else 0. Calibrated with all-MiniLM-L6-v2 on
bench/data/kb_questions.yml: off-topic questions score 0 (11 of 12) or just
under 0.3, answered ones have a median near 0.6. A bot should answer outright
from 0.3 up and offer the hits as suggestions (or hand over to a person)
below that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from knowledge_base.models import SearchHit

RRF_K = 10
SEMANTIC_WEIGHT = 2.0
KEYWORD_WEIGHT = 1.0
SIMILARITY_FLOOR = 0.30
SIMILARITY_CEILING = 0.70
AGREEMENT_FLOOR = 0.7
# The confidence from which a bot should answer with the top hit (see above).
ANSWER_CONFIDENCE = 0.3


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """What the ranker needs to show a chunk, kept in memory per collection."""

    id: str
    article_id: str
    title: str
    heading: str
    anchor: str
    text: str
    position: int
    heading_path: str = ""
    embedder: str = ""


def _article_ranking(chunk_ids: Sequence[str], records: Mapping[str, ChunkRecord]) -> list[str]:
    seen: dict[str, None] = {}
    for chunk_id in chunk_ids:
        record = records.get(chunk_id)
        if record is not None and record.article_id not in seen:
            seen[record.article_id] = None
    return list(seen)


def rank(
    *,
    collection: str,
    semantic: Sequence[tuple[str, float]],
    keyword: Sequence[tuple[str, float]],
    records: Mapping[str, ChunkRecord],
    k: int,
) -> tuple[list[SearchHit], float]:
    """Fuse the two rankings (best first) into at most ``k`` hits and a confidence."""
    semantic = [(chunk_id, sim) for chunk_id, sim in semantic if chunk_id in records]
    keyword = [(chunk_id, score) for chunk_id, score in keyword if chunk_id in records]
    similarity = dict(semantic)

    chunk_score: dict[str, float] = {}
    # An article ranks where its best chunk ranks, counted in chunks: an article
    # trailing three chunks of another is fourth, not second.
    article_score: dict[str, float] = {}
    best_chunk: dict[str, str] = {}
    best_chunk_score: dict[str, float] = {}
    for weight, ranking in ((SEMANTIC_WEIGHT, semantic), (KEYWORD_WEIGHT, keyword)):
        seen: set[str] = set()
        for position, (chunk_id, _) in enumerate(ranking, start=1):
            article_id = records[chunk_id].article_id
            contribution = weight / (RRF_K + position)
            if article_id not in seen:
                seen.add(article_id)
                article_score[article_id] = article_score.get(article_id, 0.0) + contribution
            chunk_score[chunk_id] = chunk_score.get(chunk_id, 0.0) + contribution
    for chunk_id, score in chunk_score.items():
        article_id = records[chunk_id].article_id
        if score > best_chunk_score.get(article_id, -1.0):
            best_chunk[article_id] = chunk_id
            best_chunk_score[article_id] = score
    semantic_articles = _article_ranking([chunk_id for chunk_id, _ in semantic], records)
    keyword_articles = _article_ranking([chunk_id for chunk_id, _ in keyword], records)

    max_score = (SEMANTIC_WEIGHT + KEYWORD_WEIGHT) / (RRF_K + 1)
    ordered = sorted(article_score, key=lambda article_id: (-article_score[article_id], article_id))[:k]
    hits = []
    for article_id in ordered:
        record = records[best_chunk[article_id]]
        hits.append(
            SearchHit(
                article_id=article_id,
                collection=collection,
                title=record.title,
                heading=record.heading,
                anchor=record.anchor,
                text=record.text,
                score=min(1.0, article_score[article_id] / max_score),
                similarity=similarity.get(record.id),
                chunk_id=record.id,
            )
        )
    if not hits:
        return [], 0.0
    top_article = hits[0].article_id
    best_similarity = max(
        (sim for chunk_id, sim in semantic if records[chunk_id].article_id == top_article),
        default=min((sim for _, sim in semantic), default=0.0),
    )
    return hits, confidence(
        best_similarity,
        semantic_rank=_rank_of(top_article, semantic_articles),
        keyword_rank=_rank_of(top_article, keyword_articles),
    )


def _rank_of(article_id: str, ranking: list[str]) -> int | None:
    try:
        return ranking.index(article_id)
    except ValueError:
        return None


def confidence(similarity: float, *, semantic_rank: int | None, keyword_rank: int | None) -> float:
    """See the module docstring; ranks are 0-based, ``None`` when absent."""
    strength = (similarity - SIMILARITY_FLOOR) / (SIMILARITY_CEILING - SIMILARITY_FLOOR)
    strength = min(1.0, max(0.0, strength))
    if semantic_rank == 0 and keyword_rank == 0:
        agreement = 1.0
    elif semantic_rank is not None and keyword_rank is not None and max(semantic_rank, keyword_rank) < 3:
        agreement = 0.5
    else:
        agreement = 0.0
    return strength * (AGREEMENT_FLOOR + (1.0 - AGREEMENT_FLOOR) * agreement)
