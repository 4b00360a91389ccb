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

Confidence is a logistic model of four things a wrong answer lacks,

    share      = 1 / sum over candidate articles a of exp((score(a) - score(top)) / SHARE_TEMPERATURE)
    confidence = sigmoid(W_SIMILARITY * best cosine of the top article
                         + W_SHARE * share
                         + W_AGREEMENT * (1 if both rankers put it first)
                         + W_SENTENCE * best sentence cosine of the top article
                         + BIAS)

``share`` is the top article's part of a softmax over every candidate
article's (scaled) score: 1 when it stands alone, 1/2 when a second article is
as close, less when several are. It replaced the margin to the second
article alone, which missed a question sitting between three or four
articles. The *sentence* cosine is the best one between the question and the
top article's sentences, list items and table rows (``sentence_texts``: the
units ``knowledge_base.excerpt`` quotes from, embedded on their own; the
search embeds them on first use and keeps them in the excerpt's vector
cache). A chunk's vector averages a whole section, so a question answered by
one line of it ("can I pay cash?" in a payment-methods section) sits about as
close to it as to a neighbouring section; the one sentence that says it
stands out, and a question none of whose sentences comes close (an
unanswerable one landing on a vaguely related article) does not. It is the
largest weight; without it (no sentences, or ``rank`` called without a
scorer) the best vector's cosine stands in.

The weights are fitted (``bench/kb_confidence.py``: scikit-learn, C=3) on
five development help centres (the sample shop, and food delivery,
telehealth, a home energy supplier and a car and home insurer in
bench/data/domains_dev: 487 labelled questions, answerable and not): right
answers against wrong and unanswerable ones. The bias is shifted so that the
bot's threshold of 0.7 (``ANSWER_CONFIDENCE``, the hub's
``bot_confidence_threshold``) stands for a fitted probability of 0.73: the
point where the model answers as many questions right as the model before
did at 0.7, with fewer wrong. Measured by leave-one-industry-out
cross-validation (fit on four, score the fifth), at 0.7 it answers 59.8 % of
answerable questions right with 5.8 % of all answered wrongly or although
unanswerable, against 59.7 % / 7.2 % for the three-feature model before it
(C=1, no sentence) refitted the same way; per industry: energy 0.64 / 0.122,
food delivery 0.46 / 0.040, insurance 0.68 / 0.028, shop 0.64 / 0.081,
telehealth 0.57 / 0.020. At 5 % wrong the model before resolves 55 %, this
one 58 %. The rest of the gap to the bot's targets is the ranking's: about
one answerable question in five has another article first (hit@1 0.74-0.86
on these sets), and no reranking of the top three with these features
(learned leave-one-industry-out) did better than the fusion alone.
A bot answers outright at ``ANSWER_CONFIDENCE`` and above.

Coverage (``knowledge_base.coverage``; on when the embedder gives token
vectors and ``KnowledgeBase(coverage=True)``, the default): each of the first
``RERANK_DEPTH`` articles is scored by how much of the question it covers,
word by word, read through its text chunks that either ranker returned (its
first chunk when only a listed question found it), and they are re-ordered by
``fused / (1 + KEYWORD_WEIGHT) + COVERAGE_WEIGHT * coverage``. ``share`` is
then the new top article's part of the softmax over the fused scores, lower
when coverage overrode the fusion, so the confidence model above (unchanged)
is less sure of such a top article.
COVERAGE_WEIGHT is 0.25: on the eight development sets' top three (787
questions) hit@1 is 0.841 at 0, 0.853 at 0.25 and 0.858 at 1, but from 0.5
short colloquial questions lose their article to one using their literal
words (the sample shop's paraphrases in the tests: 12 of 14 first -> 10). With
the shipped confidence at 0.7 the development sets go from 0.665 resolved /
0.096 wrong to 0.666 / 0.092. Reading only the returned chunks bounds the
cost on a large help centre: reading every chunk of the first three articles,
a generated one of 10,000 chunks missed the token cache at every search
(a cycle of distinct articles larger than it) and its p50 was 407 ms; now
4.6 ms. On the development sets nothing changed; the sample shop lost one
first place (hit@1 0.851 -> 0.839).

Tried and left out: the top article's coverage lead over the other two as a
fifth feature of a refitted confidence model (``bench/kb_confidence.py``'s
``coverage`` model). Leave-one-industry-out its ROC AUC is 0.850 against 0.815
and at 5 % wrong it resolves 0.53 against 0.48, but at the bot's operating
point it is the same (0.585 / 0.060 against 0.590 / 0.062), and on questions
no model was fitted on it answers fewer outright: the shop's paraphrases 9 of
14 confident and right -> 7 (one confident wrong -> none), and the held-out
sets, with an earlier version, 0.647 -> 0.574 first-reply resolution for
0.061 -> 0.046 wrong.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from knowledge_base.excerpt import split_units
from knowledge_base.models import SearchHit

TEXT = "text"
QUESTION = "question"
KEYWORD_WEIGHT = 0.2
QUESTION_DISCOUNT = 0.9
W_SIMILARITY = 2.149
W_SHARE = 3.72
W_AGREEMENT = 0.212
BIAS = -5.212
W_SENTENCE = 4.51
SHARE_TEMPERATURE = 0.05
# The sentence feature reads units at least this long, and at most this many per article.
MIN_SENTENCE_CHARS = 15
MAX_SENTENCES = 48
# The confidence from which a bot should answer with the top hit (see above).
ANSWER_CONFIDENCE = 0.7
# Coverage (``knowledge_base.coverage``): the first RERANK_DEPTH articles re-ordered by
# scaled fused score + COVERAGE_WEIGHT * coverage.
RERANK_DEPTH = 3
COVERAGE_WEIGHT = 0.25


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


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the confidence model reads about the top hit (see the module docstring)."""

    similarity: float
    share: float
    agreement: bool
    sentence: float | None = None
    # The top article's coverage of the question, and its lead over the best other of the
    # first RERANK_DEPTH (None: not read). Not read by the confidence (see the module docstring);
    # bench/kb_confidence.py fits a model with the lead to compare.
    coverage: float | None = None
    coverage_lead: float | None = None

    def confidence(self) -> float:
        return confidence(self.similarity, share=self.share, agreement=self.agreement, sentence=self.sentence)


# Scores the top article's sentences against the query: its best cosine, or None without sentences.
SentenceScorer = Callable[[str], "float | None"]
# The query's coverage by some of an article's text chunks (``knowledge_base.coverage``), or None.
CoverageScorer = Callable[[Sequence["ChunkRecord"]], "float | None"]


def rank(
    *,
    collection: str,
    semantic: Sequence[tuple[str, float]],
    keyword: Sequence[tuple[str, float]],
    records: Mapping[str, ChunkRecord],
    k: int,
    texts: Mapping[str, Sequence[ChunkRecord]] | None = None,
    sentence_similarity: SentenceScorer | None = None,
    coverage: CoverageScorer | None = None,
) -> tuple[list[SearchHit], float]:
    """Fuse the two rankings (best first) into at most ``k`` hits and a confidence.

    ``texts`` maps an article id to its text chunks in reading order; without
    it, a hit through a probe shows the probe's own text.
    ``sentence_similarity`` gives an article's best sentence cosine
    (:func:`sentence_texts`); without it the top article's best vector stands in.
    ``coverage`` gives an article's coverage of the query; with it the first
    ``RERANK_DEPTH`` articles are re-ordered.
    """
    hits, evidence = rank_with_evidence(
        collection=collection,
        semantic=semantic,
        keyword=keyword,
        records=records,
        k=k,
        texts=texts,
        sentence_similarity=sentence_similarity,
        coverage=coverage,
    )
    return hits, evidence.confidence() if evidence is not None else 0.0


def rank_with_evidence(
    *,
    collection: str,
    semantic: Sequence[tuple[str, float]],
    keyword: Sequence[tuple[str, float]],
    records: Mapping[str, ChunkRecord],
    k: int,
    texts: Mapping[str, Sequence[ChunkRecord]] | None = None,
    sentence_similarity: SentenceScorer | None = None,
    coverage: CoverageScorer | None = None,
) -> tuple[list[SearchHit], Evidence | None]:
    """:func:`rank`, with the confidence model's inputs instead of its output (None without hits)."""
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
        return [], None
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
    max_score = 1.0 + KEYWORD_WEIGHT
    covered: dict[str, float] = {}
    if coverage is not None:
        # Each article is read through its text chunks that either ranker returned (all of a small
        # help centre's, a few of a large one's): what the search found of it, at a bounded cost.
        found: dict[str, list[ChunkRecord]] = defaultdict(list)
        for chunk_id in dict.fromkeys(chunk_id for chunk_id, _ in (*semantic, *keyword)):
            if records[chunk_id].kind == TEXT:
                found[records[chunk_id].article_id].append(records[chunk_id])
        for article_id in ranked[:RERANK_DEPTH]:
            chunks = found.get(article_id) or list((texts or {}).get(article_id) or ())[:1]
            value = coverage(sorted(chunks, key=lambda record: record.position)) if chunks else None
            if value is not None:
                covered[article_id] = value
        if len(covered) == len(ranked[:RERANK_DEPTH]):
            head = sorted(
                ranked[:RERANK_DEPTH],
                key=lambda a: (-(fused[a] / max_score + COVERAGE_WEIGHT * covered[a]), ranked.index(a)),
            )
            ranked = head + ranked[RERANK_DEPTH:]
        else:
            covered = {}  # an article without text among them: the fused order stands
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
    return hits, Evidence(
        similarity=best_vector.get(top_article, (missing_similarity, ""))[0],
        share=top_share([fused[article_id] / max_score for article_id in ranked]),
        agreement=semantic_first == top_article == keyword_first,
        sentence=sentence_similarity(top_article) if sentence_similarity is not None else None,
        coverage=covered.get(top_article),
        coverage_lead=(
            covered[top_article]
            - max((v for a, v in covered.items() if a != top_article), default=covered[top_article])
            if top_article in covered
            else None
        ),
    )


def sentence_texts(chunks: Sequence[ChunkRecord]) -> list[str]:
    """An article's sentences, list items and table rows (``excerpt.split_units``) as the
    sentence feature embeds them: units of ``MIN_SENTENCE_CHARS`` or more, at most
    ``MAX_SENTENCES``, in reading order. The texts are the excerpt's own, so the two share
    the vector cache."""
    found: list[str] = []
    for chunk in chunks:
        if chunk.kind != TEXT:
            continue
        for unit in split_units(chunk.text):
            text = unit.text
            if len(text.strip()) >= MIN_SENTENCE_CHARS and text not in found:
                found.append(text)
                if len(found) >= MAX_SENTENCES:
                    return found
    return found


def top_share(scores: Sequence[float]) -> float:
    """The first score's part of a softmax over ``scores`` (best first) at ``SHARE_TEMPERATURE``."""
    if not scores:
        return 0.0
    top = scores[0]
    return 1.0 / sum(math.exp((score - top) / SHARE_TEMPERATURE) for score in scores)


def confidence(similarity: float, *, share: float, agreement: bool, sentence: float | None = None) -> float:
    """See the module docstring: the probability that the top hit answers the question.

    ``sentence`` is the top article's best sentence cosine; unknown (None), the best vector's stands in.
    """
    sentence = similarity if sentence is None else sentence
    logit = W_SIMILARITY * similarity + W_SHARE * share + W_AGREEMENT * float(agreement) + W_SENTENCE * sentence + BIAS
    return 1.0 / (1.0 + math.exp(-logit))
