"""How the urgency signals that do not need Rasa read a list of messages.

    .venv/bin/python bench/urgency_probe.py [PROBE] [--examples FILE] [--classifier DIR] [--quick]

PROBE (default ``bench/data/urgency_probe.yml``) lists ``urgent`` and
``not_urgent`` messages. Each is read by the hub's two signals of its own,
the examples' nearest-neighbour match (``bot.triage``) and the fine-tuned
classifier (``bot.urgency``), and the bot's real ``bot.actions.routing
.urgent_signals`` says what follows:

- ``urgent``: handed off as urgent whatever Rasa reads (the examples or the
  classifier fired, not overruled);
- ``left to the NLU``: neither fired, nor does either overrule Rasa - the
  message is urgent exactly when Rasa's ``urgent_issue`` leads;
- ``not urgent``: whatever Rasa reads.

A minute, no Rasa and no knowledge base: for a change to the urgent examples,
before the whole hub (``bench/bot_domains.py``) measures it. The classifier
must be trained for the examples (``bench/bot_domains.py`` does, or
``python -m bot.urgency --out DIR --examples FILE``). ``--quick`` is the same
run (it is under a minute). Prints every message with its readings, and as
its last line one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, URGENCY_CACHE, emit

PROBE = ROOT / "bench" / "data" / "urgency_probe.yml"
LABELS = ("urgent", "not_urgent")


def verdict(examples: dict[str, Any], classifier: dict[str, Any]) -> str:
    """``urgent``, ``nlu`` (left to Rasa's reading) or ``not_urgent``, by the bot's own routing."""
    from bot.actions.routing import urgent_signals

    triage = {"examples": examples, "classifier": classifier}

    def parse(intent: str) -> dict[str, Any]:
        return {"intent": {"name": intent, "confidence": 1.0}, "metadata": {"triage": triage}}

    if urgent_signals(parse("ask_question")):
        return "urgent"
    return "nlu" if "nlu" in urgent_signals(parse("urgent_issue")) else "not_urgent"


def probe(messages: dict[str, list[str]], examples_path: Path, folder: Path) -> dict[str, Any]:
    from bot.triage import UrgentExamples
    from bot.urgency import UrgencyClassifier
    from knowledge_base.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.load()
    examples = UrgentExamples.from_file(examples_path, embedder.embed_documents)
    classifier = UrgencyClassifier(folder)
    figures: dict[str, Any] = {}
    for label in LABELS:
        texts = messages.get(label) or []
        vectors = embedder.embed_documents(texts) if texts else []
        counts = {"messages": len(texts), "urgent": 0, "nlu": 0, "not_urgent": 0}
        for text, vector in zip(texts, vectors, strict=True):
            match = examples.match(vector).as_dict()
            reading = classifier.read(text)
            found = verdict(match, reading)
            counts[found] += 1
            mark = {"urgent": "URGENT", "nlu": "nlu   ", "not_urgent": "      "}[found]
            print(f"{label:<10} {mark} classifier {reading['probability']:.3f} examples {match['margin']:+.3f}  {text}")
        figures[label] = counts
    urgent, calm = figures.get("urgent", {}), figures.get("not_urgent", {})
    return {
        "counts": figures,
        "urgent_caught_without_rasa": urgent.get("urgent", 0) / urgent["messages"] if urgent.get("messages") else None,
        "not_urgent_read_urgent": calm.get("urgent", 0) / calm["messages"] if calm.get("messages") else None,
        "not_urgent_left_to_nlu": calm.get("nlu", 0) / calm["messages"] if calm.get("messages") else None,
        "examples_threshold": round(examples.calibration.threshold, 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from bot import urgency
    from bot.triage import DEFAULT_EXAMPLES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", type=Path, nargs="?", default=PROBE, help="urgent / not_urgent messages (YAML)")
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES, help="urgent examples (YAML)")
    parser.add_argument("--classifier", type=Path, help="a trained urgency classifier's folder")
    parser.add_argument("--quick", action="store_true", help="the same run (it is under a minute)")
    args = parser.parse_args(argv)
    folder = args.classifier or urgency.folder_for(URGENCY_CACHE, args.examples)
    if not urgency.is_trained(folder):
        print(
            f"error: no trained classifier at {folder}: run bench/bot_domains.py with these examples, or "
            f"python -m bot.urgency --out {folder} --examples {args.examples}",
            file=sys.stderr,
        )
        return 1
    messages = yaml.safe_load(args.probe.read_text(encoding="utf-8")) or {}
    result = probe({label: list(messages.get(label) or []) for label in LABELS}, args.examples, folder)
    emit(
        {
            "benchmark": "urgency_probe",
            "probe": str(args.probe),
            "examples": str(args.examples),
            "classifier": str(folder),
            "quick": args.quick,
            **result,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
