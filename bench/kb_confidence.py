"""Fit and cross-validate the search's confidence model (``knowledge_base.search``).

    .venv/bin/python bench/kb_confidence.py [--domains DIR ...]

For every development help centre (the sample shop with
bench/data/kb_questions.yml, and each industry of bench/data/domains_dev:
never the held-out bench/data/domains) it runs the real search pipeline
(Chroma and BM25 candidates, ``rank``'s fusion) over the answerable and
unanswerable questions and records the features of the top hit: the top
article's best cosine, its share of a softmax over every candidate article's
score (``top_share``) and whether both rankers put it first. The label is
"the top hit is the expected article".

It then fits the logistic model (scikit-learn, C=1) leave-one-industry-out -
fit on the others, score the one left out - and prints, per threshold, the
share of answerable questions answered right and of all questions answered
wrongly (wrong article or unanswerable), per industry and averaged; the
margin model used before is refitted the same way for comparison. Last, the
weights fitted on every set, to paste into ``knowledge_base/search.py``.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from _common import ROOT
from kb_search import QUESTIONS_FILE, Question, domain_questions, domain_sets, load_questions

from knowledge_base import SAMPLE_DIR, KnowledgeBase
from knowledge_base import search as ranking

THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8)
DEVELOPMENT = ROOT / "bench" / "data" / "domains_dev"


def features(kb: KnowledgeBase, collection: str, question: str) -> tuple[str | None, dict[str, float]]:
    """The top article and the confidence model's inputs, as ``rank`` computes them."""
    index = kb._indexes[collection]
    query = " ".join(question.split())
    candidates = min(max(60, 20), len(index.records))
    semantic = kb.store.query(collection, kb._query_vector(query), candidates)
    keyword = [(index.order[position], score) for position, score in index.keyword.search(query, candidates)]
    records = index.records
    semantic = [
        (chunk_id, sim * ranking.QUESTION_DISCOUNT if records[chunk_id].kind == ranking.QUESTION else sim)
        for chunk_id, sim in semantic
    ]
    semantic.sort(key=lambda pair: -pair[1])
    keyword = [(chunk_id, score) for chunk_id, score in keyword if records[chunk_id].kind == ranking.TEXT]
    top_keyword = max((score for _, score in keyword), default=0.0)
    missing = min((sim for _, sim in semantic), default=0.0)
    best_vector = ranking._best_per_article(semantic, records)
    best_keyword = ranking._best_per_article(keyword, records)
    scale = 1.0 + ranking.KEYWORD_WEIGHT
    fused = {
        article: best_vector.get(article, (missing, ""))[0]
        + ranking.KEYWORD_WEIGHT * (best_keyword[article][0] / top_keyword if article in best_keyword else 0.0)
        for article in set(best_vector) | set(best_keyword)
    }
    if not fused:
        return None, {}
    ranked = sorted(fused, key=lambda article: (-fused[article], article))
    top = ranked[0]
    semantic_first = max(best_vector, key=lambda a: best_vector[a][0]) if best_vector else None
    keyword_first = max(best_keyword, key=lambda a: best_keyword[a][0]) if best_keyword else None
    second = fused[ranked[1]] if len(ranked) > 1 else 0.0
    return top, {
        "similarity": best_vector.get(top, (missing, ""))[0],
        "share": ranking.top_share([fused[article] / scale for article in ranked]),
        "margin": (fused[top] - second) / scale,
        "agreement": float(semantic_first == top == keyword_first),
    }


async def collect(sets: Sequence[tuple[str, Path, list[Question]]]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kb-confidence-") as tmp:
        async with KnowledgeBase(data_dir=Path(tmp)) as kb:
            for name, articles, questions in sets:
                await kb.ingest_dir(articles, name)
                await kb.search("warm up", collection=name)  # loads the keyword index
                for question in questions:
                    top, values = features(kb, name, question.text)
                    label = question.expected is not None and top == question.expected
                    rows.append(
                        {"industry": name, "answerable": question.expected is not None, "label": label, **values}
                    )
    return rows


def cross_validate(rows: list[dict[str, Any]], names: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression

    industries = sorted({row["industry"] for row in rows})
    probability: dict[int, float] = {}
    for left_out in industries:
        train = [row for row in rows if row["industry"] != left_out]
        model = LogisticRegression(C=1.0, max_iter=3000).fit(
            np.array([[row[n] for n in names] for row in train]), np.array([row["label"] for row in train])
        )
        for position, row in enumerate(rows):
            if row["industry"] == left_out:
                probability[position] = float(model.predict_proba(np.array([[row[n] for n in names]]))[0, 1])
    figures: dict[str, Any] = {}
    for threshold in THRESHOLDS:
        per_industry = {}
        for industry in industries:
            chosen = [p for p, row in enumerate(rows) if row["industry"] == industry]
            answerable = sum(rows[p]["answerable"] for p in chosen)
            right = sum(probability[p] >= threshold and rows[p]["label"] for p in chosen)
            wrong = sum(probability[p] >= threshold and not rows[p]["label"] for p in chosen)
            per_industry[industry] = {"resolved": round(right / answerable, 3), "wrong": round(wrong / len(chosen), 3)}
        figures[str(threshold)] = {
            "mean_resolved": round(float(np.mean([v["resolved"] for v in per_industry.values()])), 3),
            "mean_wrong": round(float(np.mean([v["wrong"] for v in per_industry.values()])), 3),
            "industries": per_industry,
        }
    final = LogisticRegression(C=1.0, max_iter=3000).fit(
        np.array([[row[n] for n in names] for row in rows]), np.array([row["label"] for row in rows])
    )
    weights = {name: round(float(w), 3) for name, w in zip(names, final.coef_[0], strict=True)}
    weights["bias"] = round(float(final.intercept_[0]), 3)
    return figures, weights


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=Path, nargs="*", default=[DEVELOPMENT], help="sets of industries")
    args = parser.parse_args(argv)
    sets = [("shop", SAMPLE_DIR, load_questions(QUESTIONS_FILE))]
    sets += [
        (industry.name, industry / "articles", domain_questions(industry)) for industry in domain_sets(args.domains)
    ]
    rows = asyncio.run(collect(sets))
    result: dict[str, Any] = {"questions": len(rows), "models": {}}
    for label, names in (
        ("share", ["similarity", "share", "agreement"]),
        ("margin", ["similarity", "margin", "agreement"]),
    ):
        figures, weights = cross_validate(rows, names)
        result["models"][label] = {"cross_validated": figures, "weights_fitted_on_all": weights}
        print(f"\n{label} model, leave-one-industry-out (mean over industries: resolved / wrong)")
        for threshold, values in figures.items():
            detail = ", ".join(f"{k} {v['resolved']:.2f}/{v['wrong']:.3f}" for k, v in values["industries"].items())
            print(f"  at {threshold}: {values['mean_resolved']:.3f} / {values['mean_wrong']:.3f}   ({detail})")
        print(f"  weights fitted on all {len(rows)} questions: {weights}")
    shipped = result["models"]["share"]["weights_fitted_on_all"]
    print(
        f"\nshipped in knowledge_base/search.py: similarity {ranking.W_SIMILARITY}, share {ranking.W_SHARE}, "
        f"agreement {ranking.W_AGREEMENT}, bias {ranking.BIAS}; refitted now: {shipped}"
    )
    print(json.dumps(result))
    return 0 if all(math.isfinite(v) for v in shipped.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
