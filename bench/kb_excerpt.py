"""What quoting the answering part costs: ``KnowledgeBase.search(excerpt=True)`` against ``excerpt=False``.

    .venv/bin/python bench/kb_excerpt.py [--quick] [--rounds N]

Indexes the sample knowledge base (knowledge_base/sample) with the real
model in a temporary folder, then runs every question of
bench/data/kb_questions.yml through three searches, query by query so all
share the machine's load: without excerpt, with excerpt and the unit-vector
cache emptied first (*cold*: the chunk's units are embedded), and with
excerpt again (*warm*: they come from the cache). The first two alternate
in order. Prints p50/p90 of each, the p50 of the per-query differences, what
``excerpt()`` itself takes on the top hit (uncached) and how many units it
embeds, and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit, percentile
from bench.kb_search import load_questions
from knowledge_base import SAMPLE_DIR, KnowledgeBase, SentenceTransformerEmbedder
from knowledge_base.excerpt import MAX_EMBEDDED_UNITS, excerpt, split_units
from knowledge_base.vector_cache import cached_embed


async def timed(kb: KnowledgeBase, query: str, *, excerpt: bool) -> float:
    started = time.perf_counter()
    await kb.search(query, k=5, excerpt=excerpt)
    return (time.perf_counter() - started) * 1000


async def measure(
    kb: KnowledgeBase, embedder: SentenceTransformerEmbedder, queries: Sequence[str], rounds: int
) -> dict[str, Any]:
    for query in queries[:5]:  # warm-up: index load, model graphs
        await kb.search(query, excerpt=True)
        await kb.search(query)
    plain: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    for round_number in range(rounds):
        for position, query in enumerate(queries):
            plain_first = (position + round_number) % 2 == 0
            if plain_first:
                plain.append(await timed(kb, query, excerpt=False))
            cached_embed.cache_clear()
            cold.append(await timed(kb, query, excerpt=True))
            if not plain_first:
                plain.append(await timed(kb, query, excerpt=False))
            warm.append(await timed(kb, query, excerpt=True))

    # excerpt() alone on each top hit, uncached, given the query vector as search gives it.
    alone: list[float] = []
    units: list[int] = []
    for query in queries:
        hit = (await kb.search(query, k=1)).hits[0]
        vector = embedder.embed_query(" ".join(query.split()))
        started = time.perf_counter()
        excerpt(query, hit.text, embed=embedder.embed_documents, query_vector=vector)
        alone.append((time.perf_counter() - started) * 1000)
        count = len(split_units(hit.text))
        units.append(0 if count == 1 else min(count, MAX_EMBEDDED_UNITS))
    return {
        "samples": len(plain),
        "search_p50_ms": round(percentile(plain, 50), 2),
        "search_p90_ms": round(percentile(plain, 90), 2),
        "excerpt_cold_p50_ms": round(percentile(cold, 50), 2),
        "excerpt_cold_p90_ms": round(percentile(cold, 90), 2),
        "excerpt_warm_p50_ms": round(percentile(warm, 50), 2),
        "excerpt_warm_p90_ms": round(percentile(warm, 90), 2),
        "added_cold_p50_ms": round(percentile([c - p for c, p in zip(cold, plain, strict=True)], 50), 2),
        "added_warm_p50_ms": round(percentile([w - p for w, p in zip(warm, plain, strict=True)], 50), 2),
        "excerpt_alone_p50_ms": round(percentile(alone, 50), 2),
        "excerpt_alone_p90_ms": round(percentile(alone, 90), 2),
        "embedded_units_median": statistics.median(units),
        "embedded_units_max": max(units),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    queries = [question.text for question in load_questions()]
    if args.quick:
        queries = queries[:20]
    with tempfile.TemporaryDirectory() as folder:
        async with KnowledgeBase(data_dir=Path(folder), embedder=embedder) as kb:
            await kb.ingest_dir(SAMPLE_DIR)
            return await measure(kb, embedder, queries, args.rounds or (1 if args.quick else 3))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 questions, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="passes over the questions")
    figures = asyncio.run(run(parser.parse_args(argv)))
    for name, value in figures.items():
        print(f"{name:>24}: {value}")
    emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
