"""A help centre written a moment before its customers arrive all at once: how long their first searches take.

    .venv/bin/python bench/kb_burst.py [--industry DIR] [--customers N] [--no-warm] [--quick]

A fresh knowledge base in this process (the real model; nothing of the help
centre or its questions embedded before) writes one development industry's
articles (default ``bench/data/domains_dev/rental-homes``) and, at once,
``--customers`` (8, as ``bot_domains.py`` sends them) customers each send its
questions one after another, every question searched as the bot searches it
(``k=3``, with the excerpt). Cold searches embed what they land on - the
articles' sentences (the confidence, the quote) and token vectors (coverage) -
and the warm the write starts (``HUB_KB_WARM``) waits while any search is in
flight. What the customers meet: p50 / p99 / worst search, and how many took
longer than the bot's limit (``HUB_BOT_KB_TIMEOUT``, 5 s), past which a
customer is handed to a person as ``kb-unavailable``. The industry's
answerable and unanswerable questions are sent; urgent ones are handed off
before any search.

``--quick``: each customer sends 4 questions (under a minute). The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from _common import ROOT, emit, percentile

from knowledge_base import KnowledgeBase, SentenceTransformerEmbedder

INDUSTRY = ROOT / "bench" / "data" / "domains_dev" / "rental-homes"
BOT_LIMIT_S = 5.0  # bot.actions.settings' default HUB_BOT_KB_TIMEOUT
QUICK_PER_CUSTOMER = 4


async def burst(industry: Path, customers: int, per_customer: int | None, warm: bool) -> dict[str, Any]:
    data = yaml.safe_load((industry / "questions.yml").read_text(encoding="utf-8"))
    questions = [item["q"] for item in data["questions"] if item["kind"] != "urgent"]  # urgent: handed off unsearched
    queues = [questions[n::customers][:per_customer] for n in range(customers)]
    elapsed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kb-burst-") as tmp:
        async with KnowledgeBase(data_dir=Path(tmp), embedder=SentenceTransformerEmbedder(), warm=warm) as kb:
            await kb.search("warming up the model itself")  # an empty knowledge base: the model's first pass only
            report = await kb.ingest_dir(industry / "articles", "default")

            async def customer(queue: list[str]) -> None:
                for question in queue:
                    started = time.perf_counter()
                    await kb.search(question, k=3, excerpt=True)
                    elapsed.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(customer(queue) for queue in queues))
            wall = time.perf_counter() - started
    return {
        "industry": industry.name,
        "articles": len(report.added),
        "chunks": report.chunks_written,
        "customers": customers,
        "searches": len(elapsed),
        "warm": warm,
        "wall_s": round(wall, 2),
        "p50_ms": round(percentile(elapsed, 50) * 1000, 1),
        "p99_ms": round(percentile(elapsed, 99) * 1000, 1),
        "max_ms": round(max(elapsed) * 1000, 1),
        "over_bot_limit": sum(seconds > BOT_LIMIT_S for seconds in elapsed),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--industry", type=Path, default=INDUSTRY, help="a folder with articles/ and questions.yml")
    parser.add_argument("--customers", type=int, default=8, help="customers searching at once (8)")
    parser.add_argument("--no-warm", action="store_true", help="without the warm after the write")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PER_CUSTOMER} questions per customer")
    args = parser.parse_args(argv)
    figures = asyncio.run(
        burst(args.industry, args.customers, QUICK_PER_CUSTOMER if args.quick else None, warm=not args.no_warm)
    )
    for key, value in figures.items():
        print(f"  {key:<16} {value}")
    emit({"benchmark": "kb_burst", "quick": args.quick, **figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
