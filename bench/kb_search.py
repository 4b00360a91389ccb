"""Knowledge-base search: accuracy, latency against the raw floor, ingest throughput.

    .venv/bin/python bench/kb_search.py [--quick] [--large-chunks N] [--rounds N] [--model DIR]

Measurements, one function each:

- ``measure_accuracy``: hit@1 / hit@3 over bench/data/kb_questions.yml (the
  labelled customer questions) against the sample knowledge base, and the
  confidence of right, wrong and unanswerable questions.
- ``--domains DIR ...``: the same over other industries' help centres, one
  collection each (``DIR/<industry>/articles`` and the answerable and
  unanswerable questions of ``DIR/<industry>/questions.yml``; default
  bench/data/domains_dev, the development sets: the held-out
  bench/data/domains is measured only when named), plus what
  the bot's threshold (``ANSWER_CONFIDENCE``) would do: right answers
  among answerable questions, wrong answers among all. ``--quick`` without
  ``--domains`` measures the first ``QUICK_INDUSTRIES`` development sets
  only (all seven take ~60 s of the minute); name them to measure all.
- ``--typos``: per industry, the same threshold figures for the questions
  as a hurried customer types them (``misspell``: one letter dropped, added,
  changed or two swapped in about a quarter of the words of five letters or
  more, the same for every run), with the search's spelling correction
  (``knowledge_base.spelling``) and without it, and for the questions as
  written without it (what the correction costs where there is no typo).
- ``--wrapped [FILE]``: the same for the questions wrapped as customers
  write them, an opening before and a closing after (``wrap``: drawn from
  FILE, default bench/data/pleasantries.yml; ``--wrapped-half even|odd``
  draws from half of it), with the focus on the sentences that ask
  (``knowledge_base.focus``) and without it, and for the questions as
  written without it.
- ``--long``: the same for the questions that have a long e-mail in the
  industry's ``long.yml`` (``_common.long_messages``), each searched as the
  hub's bot searches it (``KnowledgeBase.as_searched`` first, which reads a
  long message within the query's limit), with the focus and without it
  (the message's first 1,000 characters), and the questions as written.
- ``measure_first_searches``: each question's first search of the sample
  knowledge base just after it was written, one after another: what a help
  centre's first customers meet (after its warm, ``--no-warm`` without).
- ``measure_latency``: p50/p99 of the raw floor (``raw_floor``:
  ``model.encode(query)`` plus one ``collection.query`` on the same Chroma
  collection) against any async search, interleaved query by query;
  ``measure_kb_search_latency`` runs it for ``KnowledgeBase.search`` and
  ``measure_http_latency`` for the hub's ``GET /api/v1/kb/search`` (the hub
  app in this process, serving the same knowledge base).
- ``measure_ingest``: chunks per second for ``KnowledgeBase.ingest_dir`` of a
  generated knowledge base (10,000 chunks; 200 with ``--quick``), with the
  real model, and how long its warm took after (``warm_wait_s``: 0 when it
  is too large to warm, or with ``--no-warm``); then the latency
  measurement again over it.

Prints the figures, and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from _common import add_as_typed_arguments, long_messages, misspell, pleasantries, wrap  # noqa: E402

from knowledge_base import ANSWER_CONFIDENCE, SAMPLE_DIR, KnowledgeBase, SentenceTransformerEmbedder  # noqa: E402
from knowledge_base.chunking import chunk_article  # noqa: E402

DATA_DIR = ROOT / "bench" / "data"
QUESTIONS_FILE = DATA_DIR / "kb_questions.yml"
THRESHOLD_CANDIDATES = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)


@dataclass(frozen=True)
class Question:
    text: str
    expected: str | None


# --quick without --domains (make bench): the first development industries only, to stay within a minute.
QUICK_INDUSTRIES = 3


def load_questions(path: Path = QUESTIONS_FILE) -> list[Question]:
    data = yaml.safe_load(path.read_text())
    return [Question(text=item["q"], expected=item.get("expected")) for item in data["questions"]]


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def measure_accuracy(kb: KnowledgeBase, questions: Sequence[Question], collection: str) -> dict[str, Any]:
    answerable = [q for q in questions if q.expected]
    hit1 = hit3 = 0
    misses: list[dict[str, Any]] = []
    right: list[float] = []
    wrong: list[float] = []
    unanswerable: list[float] = []
    for question in questions:
        result = await kb.search(question.text, k=5, collection=collection)
        ids = [hit.article_id for hit in result.hits]
        if question.expected is None:
            unanswerable.append(result.confidence)
            continue
        if ids[:1] == [question.expected]:
            hit1 += 1
            right.append(result.confidence)
        else:
            wrong.append(result.confidence)
        if question.expected in ids[:3]:
            hit3 += 1
        else:
            misses.append({"q": question.text, "expected": question.expected, "got": ids[:3]})
    thresholds = {}
    for threshold in THRESHOLD_CANDIDATES:
        thresholds[str(threshold)] = {
            # answered (confidence >= t) and right / answerable questions
            "answered_right": round(sum(c >= threshold for c in right) / max(1, len(answerable)), 3),
            # answered but wrong, among answerable questions
            "answered_wrong": round(sum(c >= threshold for c in wrong) / max(1, len(answerable)), 3),
            # answered although the knowledge base has no answer
            "answered_unanswerable": round(sum(c >= threshold for c in unanswerable) / max(1, len(unanswerable)), 3),
        }
    return {
        "questions": len(answerable),
        "unanswerable_questions": len(unanswerable),
        "hit_at_1": round(hit1 / len(answerable), 4),
        "hit_at_3": round(hit3 / len(answerable), 4),
        "misses_at_3": misses,
        "confidence": {
            "right_median": round(statistics.median(right), 3) if right else None,
            "wrong_median": round(statistics.median(wrong), 3) if wrong else None,
            "unanswerable_median": round(statistics.median(unanswerable), 3) if unanswerable else None,
            "unanswerable_max": round(max(unanswerable), 3) if unanswerable else None,
            "thresholds": thresholds,
        },
    }


def domain_sets(folders: Sequence[Path] | None) -> list[Path]:
    """Industry folders (with articles/ and questions.yml) under the given sets."""
    if folders is None:
        folders = [DATA_DIR / "domains_dev"]
    return [p for folder in folders for p in sorted(folder.iterdir()) if (p / "questions.yml").exists()]


def domain_questions(industry: Path) -> list[Question]:
    """Answerable (with their article) and unanswerable questions; urgent ones are not the KB's to answer."""
    data = yaml.safe_load((industry / "questions.yml").read_text())
    return [
        Question(text=item["q"], expected=item.get("expected") if item["kind"] == "answerable" else None)
        for item in data["questions"]
        if item["kind"] in ("answerable", "unanswerable")
    ]


async def at_threshold(
    search: Callable[..., Awaitable[Any]], questions: Sequence[Question], collection: str
) -> dict[str, Any]:
    """At ANSWER_CONFIDENCE: right answers / answerable, wrong answers (wrong article or unanswerable) / all."""
    right = wrong = 0
    for question in questions:
        result = await search(question.text, k=3, collection=collection)
        if not result.hits or result.confidence < ANSWER_CONFIDENCE:
            continue
        if question.expected is not None and result.hits[0].article_id == question.expected:
            right += 1
        else:
            wrong += 1
    answerable = sum(1 for q in questions if q.expected is not None)
    return {"resolved": round(right / max(1, answerable), 3), "wrong": round(wrong / max(1, len(questions)), 3)}


async def with_and_without(
    kb: KnowledgeBase,
    questions: Sequence[Question],
    typed: Sequence[Question],
    collection: str,
    feature: str,
    *,
    as_the_hub: bool = False,
) -> dict[str, Any]:
    """The threshold figures for the ``typed`` questions with the search's ``feature`` ("spelling",
    "focus") and without it, and for the questions as written without it. ``as_the_hub``: each
    typed message is searched as the hub's bot searches it, ``KnowledgeBase.as_searched`` first
    (a message longer than a query may be is read within its limit)."""

    async def searched(text: str, **kwargs: Any) -> Any:
        return await kb.search(await kb.as_searched(text, kwargs["collection"]), **kwargs)

    search = searched if as_the_hub else kb.search
    figures = {"with": await at_threshold(search, typed, collection)}
    setattr(kb, feature, False)
    try:
        figures["without"] = await at_threshold(search, typed, collection)
        figures["as_written_without"] = await at_threshold(kb.search, questions, collection)
    finally:
        setattr(kb, feature, True)
    return figures


def raw_floor(
    kb: KnowledgeBase, embedder: SentenceTransformerEmbedder, collection: str, *, k: int = 5
) -> Callable[[str], None]:
    """The least any search must do: encode the query, one Chroma query, inline."""
    handle = kb.store.handle(collection)
    assert handle is not None, f"collection {collection!r} is empty"

    def floor(query: str) -> None:
        vector = embedder.embed_query(query)
        handle.query(query_embeddings=vector.reshape(1, -1), n_results=k)

    return floor


async def measure_latency(
    floor: Callable[[str], Any],
    search: Callable[[str], Awaitable[Any]],
    queries: Sequence[str],
    *,
    rounds: int,
) -> dict[str, Any]:
    """p50/p99 of ``floor(query)`` against ``await search(query)``, interleaved query by query.

    ``search`` can be anything async - ``KnowledgeBase.search`` here, an HTTP
    call to the hub's search API elsewhere - so every figure shares one floor.
    """
    for query in queries[:5]:  # warm-up: index load, caches
        floor(query)
        await search(query)
    floor_ms: list[float] = []
    search_ms: list[float] = []
    for round_number in range(rounds):
        for position, query in enumerate(queries):
            order = (position + round_number) % 2
            for step in (order, 1 - order):
                started = time.perf_counter()
                if step == 0:
                    floor(query)
                    floor_ms.append((time.perf_counter() - started) * 1000)
                else:
                    await search(query)
                    search_ms.append((time.perf_counter() - started) * 1000)
    figures = {
        "samples": len(search_ms),
        "floor_p50_ms": round(percentile(floor_ms, 50), 2),
        "floor_p99_ms": round(percentile(floor_ms, 99), 2),
        "search_p50_ms": round(percentile(search_ms, 50), 2),
        "search_p99_ms": round(percentile(search_ms, 99), 2),
    }
    figures["p50_ratio"] = round(figures["search_p50_ms"] / figures["floor_p50_ms"], 3)
    return figures


async def measure_kb_search_latency(
    kb: KnowledgeBase,
    embedder: SentenceTransformerEmbedder,
    queries: Sequence[str],
    collection: str,
    *,
    rounds: int,
    k: int = 5,
) -> dict[str, Any]:
    """``KnowledgeBase.search`` against the raw floor on the same collection."""

    async def search(query: str) -> Any:
        return await kb.search(query, k=k, collection=collection)

    return await measure_latency(raw_floor(kb, embedder, collection, k=k), search, queries, rounds=rounds)


# -- a generated knowledge base ------------------------------------------------------

PRODUCTS = [
    "rain jacket", "insulated parka", "fleece pullover", "softshell", "down vest", "hiking boot",
    "trail runner", "approach shoe", "backpack", "daypack", "dry bag", "two-person tent",
    "ultralight tarp", "sleeping bag", "sleeping pad", "camp stove", "water filter", "headlamp",
    "trekking pole", "climbing harness", "belay device", "base layer", "wool sock", "sun hoodie",
    "ski shell", "snowshoe", "bike pannier", "hammock", "camp chair", "cooler",
]  # fmt: skip
MATERIALS = [
    "recycled nylon", "merino wool", "ripstop polyester", "waterproof membrane", "full-grain leather",
    "aluminium alloy", "synthetic insulation", "responsibly sourced down", "organic cotton canvas",
]  # fmt: skip
ACTIVITIES = [
    "day hiking", "thru-hiking", "alpine climbing", "trail running", "car camping", "backcountry skiing",
    "bikepacking", "kayak touring", "winter camping", "bouldering", "fishing trips", "family walks",
]  # fmt: skip
PLACES = [
    "the Cascades", "the Sierra Nevada", "the Rockies", "the Appalachian Trail", "coastal Maine",
    "the Scottish Highlands", "the Alps", "Patagonia", "the Lake District", "Vancouver Island",
]  # fmt: skip
TOPICS = [
    ("Choosing the right size", "fit", ["size chart", "sleeve length", "shoulder fit", "torso length", "hood fit"]),
    ("Care and cleaning", "care", ["wash cycle", "drying time", "water repellent", "storage sack", "detergent"]),
    ("Known issues", "troubleshooting", ["zip", "seam tape", "buckle", "strap", "coating"]),
    ("Warranty coverage", "warranty", ["defect", "repair", "replacement part", "claim form", "delamination"]),
    ("Compatibility", "compatibility", ["attachment point", "adapter", "older model", "accessory", "spare part"]),
    ("Shipping restrictions", "shipping", ["carrier", "air freight rule", "hazmat label", "oversized box", "courier"]),
    ("Using it safely", "safety", ["ventilation", "weight limit", "temperature rating", "inspection", "guy line"]),
    ("Technical specifications", "specs", ["weight", "packed size", "waterproof rating", "capacity", "fill power"]),
]  # fmt: skip
SENTENCES = [
    "The {product} is made from {material} and is designed for {activity}.",
    "Customers who use it in {place} often ask about the {word} and how it holds up after a season.",
    "Before contacting support about the {word}, check the label inside the {product} for the model year.",
    "If the {word} looks different from the photos, compare it with the {material} swatch on the product page.",
    "Most questions about the {word} are answered by the care card that ships with every {product}.",
    "For {activity}, we recommend checking the {word} before each trip, especially in wet conditions.",
    "Our testers took the {product} through {place} for three weeks and reported on the {word}.",
    "A replacement {word} can be ordered from the spare parts page for about ${price}.",
    "The {product} weighs {grams} grams, and the {word} adds roughly {small} grams to that figure.",
    "Earlier versions of the {product} used a different {word}, so parts are not always interchangeable.",
    "When the {word} fails within two years, send photos and your order number to open a claim.",
    "Store the {product} loosely in a dry place; compressing the {material} for months shortens its life.",
]  # fmt: skip


def generate_article(rng: random.Random, number: int, sections: int) -> tuple[str, str]:
    product = rng.choice(PRODUCTS)
    model = f"{rng.choice(['Ridge', 'Summit', 'Canyon', 'Tundra', 'Cirrus', 'Alder', 'Basalt'])} {rng.randint(10, 99)}"
    title = f"{model} {product}: {rng.choice(['guide', 'questions', 'help', 'FAQ', 'details'])}"
    lines = [
        "---",
        f"title: {json.dumps(title)}",
        f"tags: [{product.split()[-1]}, {rng.choice(TOPICS)[1]}]",
        f"category: {json.dumps(rng.choice(['Products', 'Gear help', 'Technical']))}",
        "---",
        "",
    ]

    def paragraph(words: list[str]) -> str:
        sentences = []
        for _ in range(rng.randint(3, 5)):
            sentences.append(
                rng.choice(SENTENCES).format(
                    product=f"{model} {product}",
                    material=rng.choice(MATERIALS),
                    activity=rng.choice(ACTIVITIES),
                    place=rng.choice(PLACES),
                    word=rng.choice(words),
                    price=rng.randint(5, 60),
                    grams=rng.randint(80, 2400),
                    small=rng.randint(5, 90),
                )
            )
        return " ".join(sentences)

    lines += [paragraph(["fabric", "design", "fit", "weight"]), ""]
    for heading, _, words in rng.sample(TOPICS, sections):
        lines += [f"## {heading}", "", paragraph(words), ""]
    return f"generated-{number:05d}", "\n".join(lines)


def generate_kb(folder: Path, chunks: int, *, seed: int = 20240611) -> int:
    """Write articles of 1 intro + 4 sections (one chunk each) until ``chunks`` chunks."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per_article = 5
    articles = max(1, chunks // per_article)
    for number in range(articles):
        article_id, text = generate_article(rng, number, per_article - 1)
        (folder / f"{article_id}.md").write_text(text)
    return articles * per_article


async def measure_first_searches(kb: KnowledgeBase, queries: Sequence[str], collection: str) -> dict[str, Any]:
    """Each question's first search of a collection just written, one after another, as a
    help centre's first customers meet it: after its warm (``warm_wait_s``; 0 with ``--no-warm``),
    nothing of its articles or of these questions embedded before."""
    started = time.perf_counter()
    await kb.warmed(collection)
    warm_seconds = time.perf_counter() - started
    elapsed = []
    for query in dict.fromkeys(queries):
        started = time.perf_counter()
        await kb.search(query, collection=collection)
        elapsed.append((time.perf_counter() - started) * 1000)
    return {
        "warm_wait_s": round(warm_seconds, 2),
        "samples": len(elapsed),
        "p50_ms": round(percentile(elapsed, 50), 2),
        "p99_ms": round(percentile(elapsed, 99), 2),
        "max_ms": round(max(elapsed), 2),
    }


async def measure_ingest(
    kb: KnowledgeBase, embedder: SentenceTransformerEmbedder, folder: Path, collection: str
) -> dict[str, Any]:
    """Chunks/s of ``ingest_dir``, and of the model alone on a sample of the same chunks."""
    started = time.perf_counter()
    report = await kb.ingest_dir(folder, collection)
    seconds = time.perf_counter() - started
    # The searches after it meet it as the hub's would: warmed, when it fits the caches (``warm``).
    started = time.perf_counter()
    await kb.warmed(collection)
    warm_seconds = time.perf_counter() - started
    articles, _ = kb.articles.read_all(collection)
    texts = [chunk.embed_text for article in articles[:40] for chunk in chunk_article(article)][:200]
    started = time.perf_counter()
    embedder.embed_documents(texts)
    model_seconds = time.perf_counter() - started
    return {
        "articles": len(report.added),
        "chunks": report.chunks_written,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(report.chunks_written / seconds, 1),
        "model_only_chunks_per_s": round(len(texts) / model_seconds, 1),
        "warm_wait_s": round(warm_seconds, 2),
    }


# -- main --------------------------------------------------------------------------


def print_figures(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}")
    for key, value in figures.items():
        if isinstance(value, (dict, list)):
            continue
        print(f"  {key:<24} {value}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    questions = load_questions()
    queries = [question.text for question in questions]
    embedder = SentenceTransformerEmbedder(args.model)  # None: all-MiniLM-L6-v2, as the hub
    results: dict[str, Any] = {"quick": args.quick, "coverage": not args.no_coverage, "warm": not args.no_warm}
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        started = time.perf_counter()
        async with KnowledgeBase(
            data_dir=Path(tmp), embedder=embedder, coverage=not args.no_coverage, warm=not args.no_warm
        ) as kb:
            print(f"model loaded in {time.perf_counter() - started:.1f}s")
            report = await kb.ingest_dir(SAMPLE_DIR, "default")
            print(f"sample knowledge base: {len(report.added)} articles, {report.chunks_written} chunks")
            first = await measure_first_searches(kb, queries, "default")
            print_figures("first searches of the sample knowledge base, each question once", first)
            results["first_searches"] = first

            accuracy = await measure_accuracy(kb, questions, "default")
            print_figures("accuracy (sample knowledge base)", accuracy)
            for miss in accuracy["misses_at_3"]:
                print(f"  miss: {miss['q']!r}: expected {miss['expected']}, got {miss['got']}")
            print("  confidence:", json.dumps(accuracy["confidence"]))
            results["accuracy"] = accuracy

            results["domains"] = {}
            industries = domain_sets(args.domains)
            if args.quick and args.domains is None:
                industries = industries[:QUICK_INDUSTRIES]
            for industry in industries:
                await kb.ingest_dir(industry / "articles", industry.name)
                domain = await measure_accuracy(kb, domain_questions(industry), industry.name)
                domain.update(await at_threshold(kb.search, domain_questions(industry), industry.name))
                asked = domain_questions(industry)
                if args.typos:
                    rng = random.Random(f"typos {industry.name}")
                    typed = [Question(text=misspell(q.text, rng), expected=q.expected) for q in asked]
                    domain["typos"] = await with_and_without(kb, asked, typed, industry.name, "spelling")
                if args.wrapped:
                    rng, words = (
                        random.Random(f"wrapped {industry.name}"),
                        pleasantries(args.wrapped, args.wrapped_half),
                    )
                    typed = [Question(text=wrap(q.text, rng, *words), expected=q.expected) for q in asked]
                    domain["wrapped"] = await with_and_without(kb, asked, typed, industry.name, "focus")
                if args.long:
                    emails = long_messages(industry)
                    long = [q for q in asked if q.text in emails]
                    typed = [Question(text=emails[q.text].email, expected=q.expected) for q in long]
                    domain["long"] = await with_and_without(kb, long, typed, industry.name, "focus", as_the_hub=True)
                print_figures(f"accuracy ({industry.parent.name}/{industry.name})", domain)
                results["domains"][f"{industry.parent.name}/{industry.name}"] = {
                    key: domain[key]
                    for key in ("questions", "hit_at_1", "hit_at_3", "resolved", "wrong", "typos", "wrapped", "long")
                    if key in domain
                }

            latency = await measure_kb_search_latency(kb, embedder, queries, "default", rounds=args.rounds)
            print_figures(f"latency, sample knowledge base ({report.chunks_written} chunks)", latency)
            results["latency_sample"] = latency

            hub = await start_hub_api(kb, Path(tmp))
            http = await measure_http_latency(hub, kb, embedder, queries, "default", rounds=args.rounds)
            print_figures("latency of GET /api/v1/kb/search, sample knowledge base", http)
            results["http_sample"] = http

            if args.large_chunks:
                folder = Path(tmp) / "generated"
                chunks = generate_kb(folder, args.large_chunks)
                print(f"\ngenerated {chunks} chunks; ingesting with the real model...")
                ingest = await measure_ingest(kb, embedder, folder, "generated")
                print_figures("ingest", ingest)
                results["ingest"] = ingest
                latency = await measure_kb_search_latency(kb, embedder, queries, "generated", rounds=args.rounds)
                print_figures(f"latency, generated knowledge base ({ingest['chunks']} chunks)", latency)
                results["latency_large"] = latency
                http = await measure_http_latency(hub, kb, embedder, queries, "generated", rounds=args.rounds)
                print_figures(
                    f"latency of GET /api/v1/kb/search, generated knowledge base ({ingest['chunks']} chunks)", http
                )
                results["http_large"] = http
            await hub.close()
    return results


async def start_hub_api(kb: KnowledgeBase, workdir: Path) -> Any:
    """The hub's HTTP API in this process, serving this knowledge base."""
    from aiohttp.test_utils import TestClient, TestServer

    from hub.app import create_app
    from hub.config import Settings
    from hub.storage.migrate import upgrade

    url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
    upgrade(url)
    settings = Settings(
        database_url=url,
        data_dir=workdir,
        channels="",
        bot="none",
        kb_search_rate_limit="1000000/minute",
        _env_file=None,
    )
    client = TestClient(TestServer(create_app(settings, knowledge_base=kb), host="127.0.0.1", port=0))
    await client.start_server()
    return client


async def measure_http_latency(
    client: Any,
    kb: KnowledgeBase,
    embedder: SentenceTransformerEmbedder,
    queries: Sequence[str],
    collection: str,
    *,
    rounds: int,
    k: int = 5,
) -> dict[str, Any]:
    """``GET /api/v1/kb/search`` (HTTP, JSON, rate limit, the hub's middleware) against the raw floor."""

    async def search(query: str) -> Any:
        async with client.get("/api/v1/kb/search", params={"q": query, "k": str(k), "collection": collection}) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")

    return await measure_latency(raw_floor(kb, embedder, collection, k=k), search, queries, rounds=rounds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"200 generated chunks, 1 round, the first {QUICK_INDUSTRIES} development industries "
        "(all of them with --domains): under a minute",
    )
    parser.add_argument("--large-chunks", type=int, default=None, help="size of the generated knowledge base")
    parser.add_argument("--rounds", type=int, default=None, help="passes over the questions per latency figure")
    parser.add_argument(
        "--domains",
        type=Path,
        nargs="*",
        default=None,
        help="sets of industries (default: bench/data/domains_dev; name bench/data/domains to measure the held-out ones)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a local sentence-transformers folder to search with (as HUB_KB_MODEL_PATH; default all-MiniLM-L6-v2)",
    )
    parser.add_argument(
        "--no-coverage",
        action="store_true",
        help="search without coverage (as HUB_KB_COVERAGE=false): no re-ordering of the first articles by it",
    )
    parser.add_argument(
        "--no-warm",
        action="store_true",
        help="do not warm a collection after a write (as HUB_KB_WARM=false): its first searches embed its articles",
    )
    add_as_typed_arguments(parser, "also measure the questions")
    args = parser.parse_args(argv)
    if args.large_chunks is None:
        args.large_chunks = 200 if args.quick else 10_000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    results = asyncio.run(run(args))
    summary = {
        "quick": results["quick"],
        "coverage": results["coverage"],
        "warm": results["warm"],
        "questions": results["accuracy"]["questions"],
        "hit_at_1": results["accuracy"]["hit_at_1"],
        "hit_at_3": results["accuracy"]["hit_at_3"],
        "confidence": results["accuracy"]["confidence"],
        "domains": results["domains"],
        "first_searches": results["first_searches"],
        "latency_sample": results["latency_sample"],
        "ingest": results.get("ingest"),
        "latency_large": results.get("latency_large"),
        "http_sample": results.get("http_sample"),
        "http_large": results.get("http_large"),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
