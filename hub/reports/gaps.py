"""Content gaps: the questions the help centre fails to answer, and the articles voted unhelpful.

From ``kb_search_log`` (``hub.kb.searchlog``), a question has **no good
answer** when the bot did not answer it (clarified, said what it can help
with, handed off after asking the knowledge base) or when a portal search
found nothing, was below the bot's answer confidence, or nothing was opened
from its results.

Those questions are **clustered by meaning** with the knowledge base's own
embedding model, so that fifty phrasings of one missing article are one row
with a count and a few examples: identical queries are counted in SQL, the
distinct ones embedded (in the knowledge base's thread pool, off the event
loop), then grouped greedily, most asked first: a question joins the cluster
whose centroid it is closest to when the cosine is at least
``CLUSTER_SIMILARITY``, else starts one. The centroid (the count-weighted mean
of the members' unit vectors) keeps a chain of near neighbours from drifting
into another topic, as single-link clustering would.

A second pass merges clusters whose centroids meet the threshold, closest
first (the greedy pass depends on the order the questions come in).

``CLUSTER_SIMILARITY`` = 0.45 was calibrated with all-MiniLM-L6-v2 on five
paraphrase sets of ten written for it (``tests/hub/gap_paraphrases.py``, run
it to measure; not the report test's sets): paraphrases sit at 0.49-0.95
(median 0.62-0.87) from their own set's centroid and at most 0.35 from
another set's. At 0.40-0.45 the four tight sets are one cluster each and
nothing is mixed; the fifth (warranty: different complaints about broken
products, arguably several questions) splits in four, seven in the largest; at 0.50-0.55 it splits
further, at 0.60 tight sets start to split. 0.45 keeps a 0.1 margin above
the closest foreign centroid.

Without the knowledge base (``HUB_KB_ENABLED=false``) each distinct query is
its own row.

``groups["unhelpful"]``: the portal's articles with the most "no" votes
(``kb_votes``), with their "yes" votes and share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.reports.base import Context, Report, Result, Row
from hub.reports.params import ReportParams
from hub.storage.schema import kb_search_log, kb_votes

CLUSTER_SIMILARITY = 0.45
MAX_QUESTIONS = 3000  # distinct questions clustered, most asked first (the merge pass holds a k x k matrix)
EXAMPLES = 5
MAX_CLUSTERS = 100
UNHELPFUL_ARTICLES = 20
# Without the bot's own setting in the context, the default of HUB_BOT_CONFIDENCE_THRESHOLD.
DEFAULT_ANSWER_CONFIDENCE = 0.7

Embed = Callable[[Sequence[str]], Awaitable[Any]]


def _no_good_answer(answer_confidence: float) -> sa.ColumnElement[bool]:
    log = kb_search_log.c
    bot = sa.and_(log.source == "bot", log.outcome != "answered")
    # A search answered: confident, and the searcher opened a result. The
    # confidence alone is not enough: it rates shared vocabulary highly (11
    # of the test's 30 "rent a tent" phrasings scored >= 0.7 against the
    # gear-care article), and a click alone may be on a poor guess.
    search = sa.and_(
        log.source != "bot",
        sa.or_(
            log.outcome == "no_results",
            sa.func.coalesce(log.confidence, 0.0) < answer_confidence,
            log.clicked_article_id.is_(None),
        ),
    )
    return sa.or_(bot, search)


def read(conn: Connection, params: ReportParams, context: Context) -> Result:
    """The gap questions (distinct, with counts) and the unhelpful articles;
    ``finish`` clusters the questions."""
    log = kb_search_log.c
    threshold = context.answer_confidence if context.answer_confidence is not None else DEFAULT_ANSWER_CONFIDENCE
    in_range = sa.and_(log.created_at >= params.start, log.created_at < params.end)
    asked = conn.execute(sa.select(sa.func.count()).select_from(kb_search_log).where(in_range)).scalar_one()
    count = sa.func.count().label("n")
    rows = conn.execute(
        sa.select(
            log.collection,
            log.query,
            count,
            sa.func.sum(sa.case((log.source == "bot", 1), else_=0)).label("bot"),
            sa.func.sum(sa.case((log.outcome == "handed_off", 1), else_=0)).label("handed_off"),
            sa.func.max(log.confidence).label("best_confidence"),
            sa.func.max(log.created_at).label("last_asked"),
        )
        .where(in_range, _no_good_answer(threshold), log.query != "")
        .group_by(log.collection, log.query)
        .order_by(count.desc(), log.query)
        .limit(MAX_QUESTIONS)
    ).all()
    questions = [
        {
            "collection": row.collection,
            "query": row.query,
            "count": int(row.n),
            "bot": int(row.bot or 0),
            "handed_off": int(row.handed_off or 0),
            "best_confidence": None if row.best_confidence is None else round(float(row.best_confidence), 4),
            "last_asked": row.last_asked.isoformat() if row.last_asked else None,
        }
        for row in rows
    ]
    no = sa.func.sum(sa.case((kb_votes.c.helpful.is_(False), 1), else_=0)).label("no")
    yes = sa.func.sum(sa.case((kb_votes.c.helpful.is_(True), 1), else_=0)).label("yes")
    votes = conn.execute(
        sa.select(kb_votes.c.collection, kb_votes.c.article_id, no, yes)
        .where(kb_votes.c.created_at >= params.start, kb_votes.c.created_at < params.end)
        .group_by(kb_votes.c.collection, kb_votes.c.article_id)
        .having(no > 0)
        .order_by(no.desc(), yes, kb_votes.c.article_id)
        .limit(UNHELPFUL_ARTICLES)
    ).all()
    unhelpful = [
        {
            "collection": v.collection,
            "article_id": v.article_id,
            "unhelpful": int(v.no),
            "helpful": int(v.yes),
            "unhelpful_share": round(int(v.no) / (int(v.no) + int(v.yes)), 4),
        }
        for v in votes
    ]
    gaps = sum(q["count"] for q in questions)
    totals: list[Row] = [
        {"asked": int(asked), "no_good_answer": gaps, "distinct_questions": len(questions), "clusters": None}
    ]
    notes = (
        [f"only the {MAX_QUESTIONS} most asked distinct questions are clustered"] if len(rows) == MAX_QUESTIONS else []
    )
    return Result(series=[], totals=totals, groups={"questions": questions, "unhelpful": unhelpful}, notes=notes)


def cluster(vectors: np.ndarray, weights: Sequence[int], threshold: float = CLUSTER_SIMILARITY) -> list[list[int]]:
    """Greedy centroid clustering of unit ``vectors`` in the order given
    (most asked first): each joins the closest centroid at cosine >=
    ``threshold`` or starts a cluster; then clusters whose centroids meet
    the threshold merge, closest first. Returns the members' indexes."""
    count = len(vectors)
    if count == 0:
        return []
    members: list[list[int]] = []
    sums = np.zeros((count, vectors.shape[1]), dtype=np.float64)  # count-weighted sums, one row per cluster
    centroids = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    for index, vector in enumerate(vectors):
        k = len(members)
        if k:
            similarity = centroids[:k] @ vector
            best = int(np.argmax(similarity))
            if similarity[best] >= threshold:
                members[best].append(index)
                sums[best] += weights[index] * vector
                centroids[best] = sums[best] / np.linalg.norm(sums[best])
                continue
        members.append([index])
        sums[k] = weights[index] * vector
        centroids[k] = sums[k] / np.linalg.norm(sums[k])
    k = len(members)
    if k < 2:
        return members
    # The greedy pass depends on the order: a cluster started by an outlying
    # phrasing may miss its topic's centroid. Merge clusters whose centroids
    # meet the threshold, closest pair first, until none do.
    sums, centroids = sums[:k], centroids[:k]
    similarity = centroids @ centroids.T
    np.fill_diagonal(similarity, -1.0)
    while len(members) > 1:
        a, b = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        if similarity[a, b] < threshold:
            break
        keep, drop = int(min(a, b)), int(max(a, b))
        members[keep].extend(members.pop(drop))
        sums[keep] += sums[drop]
        sums = np.delete(sums, drop, axis=0)
        centroids = np.delete(centroids, drop, axis=0)
        centroids[keep] = sums[keep] / np.linalg.norm(sums[keep])
        similarity = np.delete(np.delete(similarity, drop, axis=0), drop, axis=1)
        row = centroids @ centroids[keep]  # only the merged cluster's similarities change
        row[keep] = -1.0
        similarity[keep, :] = row
        similarity[:, keep] = row
    return members


def clusters_of(questions: list[Row], vectors: np.ndarray | None) -> list[Row]:
    """One row per cluster (per collection): count, distinct phrasings, examples, most asked first."""
    rows: list[Row] = []
    by_collection: dict[str, list[int]] = {}
    for index, question in enumerate(questions):
        by_collection.setdefault(question["collection"], []).append(index)
    for collection, indexes in by_collection.items():
        if vectors is None:
            groups = [[i] for i in range(len(indexes))]
        else:
            groups = cluster(vectors[indexes], [questions[i]["count"] for i in indexes])
        for group in groups:
            members = sorted((questions[indexes[i]] for i in group), key=lambda q: (-q["count"], q["query"]))
            confidences = [q["best_confidence"] for q in members if q["best_confidence"] is not None]
            rows.append(
                {
                    "collection": collection,
                    "question": members[0]["query"],
                    "count": sum(q["count"] for q in members),
                    "phrasings": len(members),
                    "bot": sum(q["bot"] for q in members),
                    "handed_off": sum(q["handed_off"] for q in members),
                    "best_confidence": max(confidences) if confidences else None,
                    "last_asked": max(q["last_asked"] or "" for q in members) or None,
                    "examples": [q["query"] for q in members[:EXAMPLES]],
                }
            )
    rows.sort(key=lambda r: (-r["count"], r["question"]))
    return rows[:MAX_CLUSTERS]


async def finish(result: Result, context: Context) -> Result:
    """Cluster the questions ``read`` found, with the knowledge base's model when there is one."""
    import asyncio

    questions: list[Row] = result.groups.pop("questions")
    vectors = None
    if context.embed is not None and questions:
        vectors = np.asarray(await context.embed([q["query"] for q in questions]), dtype=np.float32)
    clusters = await asyncio.to_thread(clusters_of, questions, vectors)
    if context.embed is None:
        result.notes.append("the knowledge base is off: questions are not clustered by meaning")
    result.groups = {"clusters": clusters, **result.groups}
    result.totals[0]["clusters"] = len(clusters)
    return result


REPORT = Report(
    name="gaps",
    summary="questions the help centre does not answer, clustered by meaning; articles voted unhelpful",
    run=read,
    filters=frozenset(),
    finish=finish,
)
