"""Bot NLU quality: intent accuracy, macro-F1, urgent recall, false handoffs, training time.

    .venv/bin/python bench/bot_eval.py [--quick] [--eval FILE ...] [--config PATH]

- Trains the Rasa model (``bot.rasa.model``; ``--quick`` reuses the cached
  model for the current training data when there is one, otherwise it
  forces a fresh training run so the recorded training time is current).
- Starts the real ``rasa run --enable-api`` from .venv-rasa on a free
  loopback port and sends every held-out message to ``POST /model/parse``.
- Scores each evaluation file (default: every bench/data/bot_eval*.yml; the
  first is the headline, ``bot_eval_holdout.yml`` was written after the
  training data was final and never used to tune it):

  * intent accuracy and macro-F1 over the intents in the file (``nlu_fallback``
    counts as wrong);
  * urgent recall: share of urgent_issue messages whose parse leads to an
    urgent handoff (``bot.actions.routing.route``, the action server's own
    decision; target >= 0.95);
  * false-handoff rate: share of ask_question messages predicted as
    request_human, complaint or urgent_issue (target <= 0.10), and the
    routed variant (any handoff the parse leads to);
  * the same two routed figures for other values of HUB_BOT_URGENT_ESCALATION
    (an urgent_issue score that escalates a question; "off" disables it);
  * parse latency p50/p95 over HTTP.

Refuses to run (exit 2) when an evaluation message is also a training example.
Prints the figures, and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bot.actions.routing import HANDOFF, HANDOFF_INTENTS, Route, route, urgent_escalation_threshold  # noqa: E402
from bot.rasa import kb_nlu, launch, model  # noqa: E402

DATA_DIR = ROOT / "bench" / "data"
NLU_FILE = model.PROJECT_DIR / "data" / "nlu.yml"
ESCALATION_CANDIDATES = (0.1, 0.2, 0.3, 0.5, 1.01)
URGENT_RECALL_TARGET = 0.95
FALSE_HANDOFF_TARGET = 0.10


@dataclass(frozen=True)
class Labelled:
    text: str
    intent: str


@dataclass(frozen=True)
class Prediction:
    item: Labelled
    intent: str
    confidence: float
    route: Route
    seconds: float
    parse: dict[str, Any]


def load_eval(path: Path) -> list[Labelled]:
    data = yaml.safe_load(path.read_text())
    return [Labelled(text=str(m["text"]), intent=str(m["intent"])) for m in data["messages"]]


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def training_examples(path: Path = NLU_FILE) -> set[str]:
    data = yaml.safe_load(path.read_text())
    examples: set[str] = set()
    for block in data.get("nlu", []):
        if "intent" in block:
            for line in str(block.get("examples", "")).splitlines():
                line = line.strip()
                if line.startswith("- "):
                    examples.add(normalise(line[2:]))
    return examples


def parse_all(base_url: str, items: Sequence[Labelled]) -> list[Prediction]:
    predictions = []
    for item in items:
        started = time.perf_counter()
        parse = launch.post_json(f"{base_url}/model/parse", {"text": item.text})
        seconds = time.perf_counter() - started
        assert isinstance(parse, dict)
        intent = parse.get("intent") or {}
        predictions.append(
            Prediction(
                item=item,
                intent=str(intent.get("name")),
                confidence=float(intent.get("confidence") or 0.0),
                route=route(parse),
                seconds=seconds,
                parse=parse,
            )
        )
    return predictions


def f1_scores(predictions: Sequence[Prediction]) -> dict[str, dict[str, float]]:
    labels = sorted({p.item.intent for p in predictions})
    scores = {}
    for label in labels:
        tp = sum(1 for p in predictions if p.intent == label and p.item.intent == label)
        predicted = sum(1 for p in predictions if p.intent == label)
        actual = sum(1 for p in predictions if p.item.intent == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return scores


def score(predictions: Sequence[Prediction]) -> dict[str, Any]:
    per_intent = f1_scores(predictions)
    urgent = [p for p in predictions if p.item.intent == "urgent_issue"]
    questions = [p for p in predictions if p.item.intent == "ask_question"]
    latencies = sorted(p.seconds for p in predictions)
    escalation = {
        str(threshold): {
            "urgent_recall": round(
                sum(route(p.parse, escalate_at=threshold).priority == "urgent" for p in urgent) / max(len(urgent), 1), 4
            ),
            "false_handoff_rate_routed": round(
                sum(route(p.parse, escalate_at=threshold).action == HANDOFF for p in questions)
                / max(len(questions), 1),
                4,
            ),
        }
        for threshold in ESCALATION_CANDIDATES
    }
    return {
        "messages": len(predictions),
        "accuracy": round(sum(p.intent == p.item.intent for p in predictions) / len(predictions), 4),
        "macro_f1": round(statistics.fmean(s["f1"] for s in per_intent.values()), 4),
        "urgent_messages": len(urgent),
        "urgent_recall": round(sum(p.route.priority == "urgent" for p in urgent) / max(len(urgent), 1), 4),
        "urgent_intent_recall": round(sum(p.intent == "urgent_issue" for p in urgent) / max(len(urgent), 1), 4),
        "question_messages": len(questions),
        "false_handoff_rate": round(sum(p.intent in HANDOFF_INTENTS for p in questions) / max(len(questions), 1), 4),
        "false_handoff_rate_routed": round(
            sum(p.route.action == HANDOFF for p in questions) / max(len(questions), 1), 4
        ),
        "nlu_fallback": sum(p.intent == "nlu_fallback" for p in predictions),
        "parse_ms_p50": round(1000 * latencies[len(latencies) // 2], 1),
        "parse_ms_p95": round(1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
        "per_intent": {k: {m: round(v, 3) for m, v in s.items()} for k, s in per_intent.items()},
        "urgent_escalation_threshold": urgent_escalation_threshold(),
        "escalation_sweep": escalation,
    }


def print_report(name: str, figures: dict[str, Any], predictions: Sequence[Prediction]) -> None:
    def mark(ok: bool) -> str:
        return "ok" if ok else "BELOW TARGET"

    print(f"\n== {name}: {figures['messages']} messages")
    print(f"intent accuracy      {figures['accuracy']:.3f}")
    print(f"macro-F1             {figures['macro_f1']:.3f}")
    print(
        f"urgent recall        {figures['urgent_recall']:.3f} of {figures['urgent_messages']} "
        f"(intent alone {figures['urgent_intent_recall']:.3f}; target >= {URGENT_RECALL_TARGET}: "
        f"{mark(figures['urgent_recall'] >= URGENT_RECALL_TARGET)})"
    )
    print(
        f"false handoffs       {figures['false_handoff_rate']:.3f} of {figures['question_messages']} questions "
        f"(routed {figures['false_handoff_rate_routed']:.3f}; target <= {FALSE_HANDOFF_TARGET}: "
        f"{mark(figures['false_handoff_rate_routed'] <= FALSE_HANDOFF_TARGET)})"
    )
    print(f"nlu_fallback         {figures['nlu_fallback']}")
    print(
        f"urgent escalation    HUB_BOT_URGENT_ESCALATION={figures['urgent_escalation_threshold']}; "
        "other thresholds (urgent recall / routed false handoffs):"
    )
    for threshold, sweep in figures["escalation_sweep"].items():
        label = "off" if float(threshold) > 1 else threshold
        print(f"  {label:>4}: {sweep['urgent_recall']:.3f} / {sweep['false_handoff_rate_routed']:.3f}")
    print(f"parse latency        p50 {figures['parse_ms_p50']} ms, p95 {figures['parse_ms_p95']} ms")
    print("per intent           precision recall f1 support")
    for intent, s in figures["per_intent"].items():
        print(f"  {intent:18} {s['precision']:.2f}      {s['recall']:.2f}   {s['f1']:.2f} {s['support']:.0f}")
    confusions = Counter((p.item.intent, p.intent) for p in predictions if p.intent != p.item.intent)
    if confusions:
        print("confusions (expected -> predicted: count)")
        for (expected, predicted), count in confusions.most_common():
            print(f"  {expected} -> {predicted}: {count}")
    print("misroutes (expected, predicted, confidence, route: text)")
    for p in predictions:
        wrong_route = (p.item.intent == "urgent_issue" and p.route.priority != "urgent") or (
            p.item.intent == "ask_question" and p.route.action == HANDOFF
        )
        if p.intent != p.item.intent or wrong_route:
            how = f"{p.route.action}/{p.route.priority}" if p.route.priority else p.route.action
            print(f"  {p.item.intent} -> {p.intent} {p.confidence:.2f} {how}: {p.item.text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reuse the cached model if present")
    parser.add_argument("--eval", type=Path, action="append", help="evaluation file(s); default bot_eval*.yml")
    parser.add_argument("--config", type=Path, help="another Rasa config.yml (experiments; own models dir)")
    args = parser.parse_args(argv)

    eval_files = args.eval or sorted(DATA_DIR.glob("bot_eval*.yml"), key=lambda p: (p.name != "bot_eval.yml", p))
    sets = {path.stem: load_eval(path) for path in eval_files}
    known = training_examples()
    leaked = [(name, i.text) for name, items in sets.items() for i in items if normalise(i.text) in known]
    if leaked:
        for name, text in leaked:
            print(f"{name}: also a training example: {text!r}", file=sys.stderr)
        return 2

    if not model.rasa_executable().exists():
        print(f"error: {model.rasa_executable()} not found: run `make .venv-rasa/.installed` first", file=sys.stderr)
        return 1
    models_dir = model.DEFAULT_MODELS_DIR
    if args.config:
        models_dir = Path(tempfile.gettempdir()) / "servicehub-bot-eval-models"
    # The model `make rasa-model` trains on a fresh clone: general data plus the sample KB's examples.
    extra = [kb_nlu.sample_training_file(Path(tempfile.mkdtemp(prefix="bot-eval-kb-nlu-")))]
    present = (models_dir / f"{model.training_hash(config=args.config, extra_data=extra)}.tar.gz").exists()
    info = model.ensure_model(
        config=args.config, models_dir=models_dir, force=not (args.quick and present), extra_data=extra
    )
    how = "trained now" if info.trained_now else "cached"
    print(f"model {info.path.name} ({how}; last real training run {info.training_seconds:.1f} s)")

    port = launch.free_port()
    with tempfile.TemporaryDirectory(prefix="bot-eval-") as tmp:
        server = launch.rasa_server(info.path, port, log_path=Path(tmp) / "rasa.log")
        started = time.monotonic()
        with server.start():
            server.wait_ready(launch.RASA_READY_TIMEOUT)
            startup = time.monotonic() - started
            print(f"rasa ready in {startup:.1f} s on port {port}")
            base_url = f"http://{launch.LOOPBACK}:{port}"
            results = {name: parse_all(base_url, items) for name, items in sets.items()}

    report: dict[str, Any] = {
        "bench": "bot_eval",
        "quick": args.quick,
        "model": info.path.name,
        "model_hash": info.hash,
        "trained_now": info.trained_now,
        "training_seconds": info.training_seconds,
        "rasa_startup_seconds": round(startup, 1),
        "config": str(args.config or model.PROJECT_DIR / "config.yml"),
    }
    for index, (name, predictions) in enumerate(results.items()):
        figures = score(predictions)
        print_report(name, figures, predictions)
        if index == 0:
            report.update(figures)
        else:
            report[name] = figures
    print(f"\ntraining time        {info.training_seconds:.1f} s (last real run, {info.trained_at})")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    sys.exit(main())
