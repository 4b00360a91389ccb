"""Hybrid ranking: an article's best vector fused with its best BM25 score.

An article is found through its text chunks and the questions its front
matter lists (``knowledge_base.chunking``). Both rankers return up to
``max(MIN_CANDIDATES, 4k)`` vectors/documents and each article is scored by
its best one:

    score(a) = max cosine(a) + KEYWORD_WEIGHT * max bm25(a) / max bm25(any article)

- The BM25 part is relative to the query's best BM25 score (so it lies in
  [0, 1] whatever the corpus size or query length) and weighs little: on
  paraphrased customer questions meaning matters more than shared words,
  while BM25 still lifts exact terms (error codes, product names, "VAT")
  that the model blurs. BM25 reads text chunks only.
- A listed question's cosine counts ``QUESTION_DISCOUNT`` of itself: a short
  question is close to many neighbouring questions, and undiscounted it took
  the first place from the right article more often than it gave it.
- Measured (bench/kb_search.py, ``--domains``) against the reciprocal rank
  fusion used before, which threw away *how much* better the first vector
  was: hit@1 0.83 -> 0.86 on the sample shop, 0.74 -> 0.81 and 0.77 -> 0.83
  on two other industries' help centres, hit@3 0.96-0.99.

An article missing from a ranking gets the lowest cosine that ranking
returned, or 0 BM25. Each article is shown through its best *text* chunk
(highest cosine plus weighted relative BM25 among its text chunks that were
returned); one found only through a listed question shows its first chunk.
``SearchHit.score`` is the fused score scaled by the maximum (1 +
KEYWORD_WEIGHT), so it lies in [0, 1].

Confidence is the estimated probability that the top hit answers the
question: a logistic model of three things a wrong answer lacks,

    share      = 1 / sum over candidate articles a of exp((score(a) - score(top)) / SHARE_TEMPERATURE)
    confidence = sigmoid(W_SIMILARITY * best cosine of the top article
                         + W_SHARE * share
                         + W_AGREEMENT * (1 if both rankers put it first)
                         + BIAS)

``share`` is the top article's part of a softmax over every candidate
article's (scaled) score: 1 when it stands alone, 1/2 when a second article is
as close, less when several are. It replaced the margin to the second
article alone, which missed a question sitting between three or four
articles. The weights are fitted on four development help centres (the sample
shop, and food delivery, telehealth and a home energy supplier in
bench/data/domains_dev: 381 labelled questions, answerable and not): right
answers against wrong and unanswerable ones. Measured by leave-one-industry-out
cross-validation (fit on three, score the fourth; ``bench/kb_confidence.py``),
at the bot's threshold of 0.7 it answers 57 % of answerable questions right
with 7.9 % of all answered wrongly or although unanswerable, against 53 % /
7.1 % for the margin model refitted the same way; at the same wrong rate
(5.1 %, threshold 0.75 for both) 52 % against 47 %. (The margin model's
earlier weights, fitted on three of these sets and scored on them: 60 % /
8.0 % at 0.7.)
A bot answers outright at ``ANSWER_CONFIDENCE`` and above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from knowledge_base.models import SearchHit

TEXT = "text"
QUESTION = "question"
KEYWORD_WEIGHT = 0.2
QUESTION_DISCOUNT = 0.9
W_SIMILARITY = 3.435
W_SHARE = 2.677
W_AGREEMENT = 0.492
BIAS = -2.824
SHARE_TEMPERATURE = 0.05
# The confidence from which a bot should answer with the top hit (see above).
ANSWER_CONFIDENCE = 0.7


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
    kind: str = TEXT


def _best_per_article(
    ranking: Sequence[tuple[str, float]], records: Mapping[str, ChunkRecord]
) -> dict[str, tuple[float, str]]:
    """article id -> (best score, chunk id of it), for a ranking sorted best first."""
    best: dict[str, tuple[float, str]] = {}
    for chunk_id, score in ranking:
        article_id = records[chunk_id].article_id
        if article_id not in best or score > best[article_id][0]:
            best[article_id] = (score, chunk_id)
    return best


def rank(
    *,
    collection: str,
    semantic: Sequence[tuple[str, float]],
    keyword: Sequence[tuple[str, float]],
    records: Mapping[str, ChunkRecord],
    k: int,
    texts: Mapping[str, Sequence[ChunkRecord]] | None = None,
) -> tuple[list[SearchHit], float]:
    """Fuse the two rankings (best first) into at most ``k`` hits and a confidence.

    ``texts`` maps an article id to its text chunks in reading order; without
    it, a hit through a probe shows the probe's own text.
    """
    semantic = [
        (chunk_id, sim * QUESTION_DISCOUNT if records[chunk_id].kind == QUESTION else sim)
        for chunk_id, sim in semantic
        if chunk_id in records
    ]
    semantic.sort(key=lambda pair: -pair[1])
    keyword = [
        (chunk_id, score) for chunk_id, score in keyword if chunk_id in records and records[chunk_id].kind == TEXT
    ]
    if not semantic and not keyword:
        return [], 0.0
    similarity = dict(semantic)
    top_keyword = max((score for _, score in keyword), default=0.0)
    relative_keyword = {chunk_id: score / top_keyword for chunk_id, score in keyword} if top_keyword > 0 else {}
    missing_similarity = min((sim for _, sim in semantic), default=0.0)

    best_vector = _best_per_article(semantic, records)
    best_keyword = _best_per_article(keyword, records)
    fused = {
        article_id: best_vector.get(article_id, (missing_similarity, ""))[0]
        + KEYWORD_WEIGHT * (best_keyword[article_id][0] / top_keyword if article_id in best_keyword else 0.0)
        for article_id in set(best_vector) | set(best_keyword)
    }
    ranked = sorted(fused, key=lambda article_id: (-fused[article_id], article_id))
    ordered = ranked[:k]

    def shown(article_id: str) -> ChunkRecord:
        candidates = {
            chunk_id for chunk_id, _ in (*semantic, *keyword)
            if records[chunk_id].article_id == article_id and records[chunk_id].kind == TEXT
        }  # fmt: skip
        if candidates:
            best = max(
                candidates,
                key=lambda chunk_id: (
                    similarity.get(chunk_id, missing_similarity) + KEYWORD_WEIGHT * relative_keyword.get(chunk_id, 0.0),
                    -records[chunk_id].position,
                ),
            )
            return records[best]
        chunks = (texts or {}).get(article_id) or ()
        if chunks:
            return chunks[0]
        return records[best_vector[article_id][1]]  # without ``texts``: the probe itself

    max_score = 1.0 + KEYWORD_WEIGHT
    hits = []
    for article_id in ordered:
        record = shown(article_id)
        hits.append(
            SearchHit(
                article_id=article_id,
                collection=collection,
                title=record.title,
                heading=record.heading,
                anchor=record.anchor,
                text=record.text,
                score=max(0.0, min(1.0, fused[article_id] / max_score)),
                similarity=similarity.get(record.id),
                chunk_id=record.id,
            )
        )
    top_article = ordered[0]
    semantic_first = max(best_vector, key=lambda a: best_vector[a][0]) if best_vector else None
    keyword_first = max(best_keyword, key=lambda a: best_keyword[a][0]) if best_keyword else None
    # On the scores as hits show them (scaled to [0, 1]), over every candidate article, whatever k is.
    return hits, confidence(
        best_vector.get(top_article, (missing_similarity, ""))[0],
        share=top_share([fused[article_id] / max_score for article_id in ranked]),
        agreement=semantic_first == top_article == keyword_first,
    )


def top_share(scores: Sequence[float]) -> float:
    """The first score's part of a softmax over ``scores`` (best first) at ``SHARE_TEMPERATURE``."""
    if not scores:
        return 0.0
    top = scores[0]
    return 1.0 / sum(math.exp((score - top) / SHARE_TEMPERATURE) for score in scores)


def confidence(similarity: float, *, share: float, agreement: bool) -> float:
    """See the module docstring: the probability that the top hit answers the question."""
    logit = W_SIMILARITY * similarity + W_SHARE * share + W_AGREEMENT * float(agreement) + BIAS
    return 1.0 / (1.0 + math.exp(-logit))
