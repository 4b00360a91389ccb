"""Urgency read by a fine-tuned classifier: the third signal, and a veto on the other two.

The nearest-neighbour examples (``bot.triage``) and Rasa's ``urgent_issue``
both see a message through a general-purpose embedding, where "my card was
stolen" and "how do I order a new card" lie close together: they disagree
with each other most on exactly the messages that matter. This classifier is
trained *for the distinction*: SetFit (contrastive fine-tuning of the
sentence-transformer on pairs of same / different-label messages, then a
logistic-regression head) on

- urgent: the team's urgent examples (``bot/urgent_examples.yml`` or
  ``HUB_BOT_URGENT_EXAMPLES``) and the NLU's ``urgent_issue`` examples;
- not urgent: the team's near misses and the NLU's questions, requests for a
  person, complaints and out-of-scope messages (bot/rasa/data/nlu.yml).

Its probability is used twice (``bot.actions.routing``):

- below ``NOT_URGENT_BELOW`` (0.1) it overrules Rasa's ``urgent_issue`` and
  the examples' match: both are sure of themselves far from their data
  ("what's the best electric car to buy", "where is your head office" were
  urgent to Rasa); the admin's urgent keyword rules still hand off;
- from ``URGENT_FROM`` (0.95) it is urgent on its own: it reads "someone
  nicked my phone and the app has my card saved" as urgent where both
  others saw a question about cards.

Chosen on the development help centres (bench/data/domains_dev, 459
questions). First, with 300 steps: urgent recall 0.901 -> 0.958, false urgent
0.095 -> 0.075, the classifier from 0.02 / 0.95 against 0.05 / 0.8 / 0.9 / 0.5
and no veto. Then 600 steps: the classifier ranks better (ROC AUC over the
development questions 0.959 -> 0.972 on the same data), so its veto can reach
further: from 0.1 (0.02 / 0.05 / 0.1 / 0.2: false urgent 0.067 / 0.064 /
0.059 / 0.059, urgent recall 0.972 until 0.2 drops one). 0.95 stays: 600
steps push its probabilities to the extremes, and between 0.98 and 0.99 recall
falls from 0.97 to 0.90, an edge no team's threshold should sit on. Measured
once on the held-out sets after (README).

Training is ~1 CPU-second per step on 2 cores (``STEPS`` = 600, ~10 minutes):
the hub trains it in a child process at start-up when the training data has
changed (``hub.bot.triage``; the folder is named by the data's fingerprint,
so a restart reuses it) and the other two signals serve until it is ready.
Nothing is downloaded: the body is the knowledge base's local model.

    .venv/bin/python -m bot.urgency --out DIR [--examples FILE] [--steps N] [--json]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.rasa import kb_nlu
from bot.triage import DEFAULT_EXAMPLES, load_examples

NLU_FILE = Path(__file__).resolve().parent / "rasa" / "data" / "nlu.yml"
URGENT_INTENTS = ("urgent_issue",)
NOT_URGENT_INTENTS = ("ask_question", "complaint", "request_human", "out_of_scope")
STEPS = 600
BATCH_SIZE = 32
PAIRS_PER_EXAMPLE = 5  # SetFit's num_iterations: pairs drawn per example (STEPS caps the total)
SEED = 42
NOT_URGENT_BELOW = 0.1
URGENT_FROM = 0.95
# The longest message it reads whole. It learnt from messages of at most ~30 words and is sure of
# itself on longer ones, whatever they say: 0.95 or more on 82 of the 112 long e-mails (130-280 words)
# of the development help centres that are not urgent. The hub's triage reads a longer message's sentences
# instead (``hub.bot.triage``).
MAX_WORDS = 60
CACHE_SIZE = 4096  # messages whose probability is kept (a few hundred KB)
DONE = "trained.json"  # written last: a folder without it is an interrupted training
# The fingerprint names what makes the classifier: bump when training changes.
VERSION = 1


def training_set(examples: Path = DEFAULT_EXAMPLES, nlu: Path = NLU_FILE) -> tuple[list[str], list[int]]:
    """(texts, labels): 1 urgent, 0 not; each text once, the first label it was given."""
    urgent, not_urgent = load_examples(examples)
    intents = kb_nlu.intent_examples(nlu)
    labelled: dict[str, int] = {}
    for texts, label in (
        (urgent, 1),
        (not_urgent, 0),
        ([t for name in URGENT_INTENTS for t in intents.get(name, [])], 1),
        ([t for name in NOT_URGENT_INTENTS for t in intents.get(name, [])], 0),
    ):
        for text in texts:
            labelled.setdefault(" ".join(text.split()), label)
    return list(labelled), list(labelled.values())


def fingerprint(texts: Sequence[str], labels: Sequence[int], base_model: str, steps: int = STEPS) -> str:
    digest = hashlib.sha256(f"v{VERSION} {base_model} steps={steps} batch={BATCH_SIZE} seed={SEED}\n".encode())
    for text, label in zip(texts, labels, strict=True):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:16]


def folder_for(
    parent: Path,
    examples: Path = DEFAULT_EXAMPLES,
    nlu: Path = NLU_FILE,
    model: Path | None = None,
    steps: int = STEPS,
) -> Path:
    """Where the classifier for this training data is (or would be) kept under ``parent``."""
    texts, labels = training_set(examples, nlu)
    return parent / fingerprint(texts, labels, str(model) if model else "default", steps)


def train(
    texts: Sequence[str], labels: Sequence[int], base_model: Path, out: Path, steps: int = STEPS
) -> dict[str, Any]:
    """Fine-tune and save to ``out`` (written to a sibling folder, then renamed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    started = time.monotonic()
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    model = SetFitModel.from_pretrained(str(base_model))
    arguments = TrainingArguments(
        output_dir=str(partial / "checkpoints"),  # never the working directory
        save_strategy="no",
        batch_size=BATCH_SIZE,
        num_epochs=1,
        max_steps=steps,
        num_iterations=PAIRS_PER_EXAMPLE,
        seed=SEED,
        report_to="none",
        show_progress_bar=False,
    )
    Trainer(
        model=model, args=arguments, train_dataset=Dataset.from_dict({"text": list(texts), "label": list(labels)})
    ).train()
    model.save_pretrained(str(partial))
    shutil.rmtree(partial / "checkpoints", ignore_errors=True)
    info = {
        "seconds": round(time.monotonic() - started, 1),
        "steps": steps,
        "examples": len(texts),
        "urgent_examples": int(sum(labels)),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (partial / DONE).write_text(json.dumps(info), encoding="utf-8")
    if is_trained(out):  # another instance sharing the folder finished first: the same training
        shutil.rmtree(partial)
        return dict(json.loads((out / DONE).read_text(encoding="utf-8")))
    shutil.rmtree(out, ignore_errors=True)  # an interrupted copy
    partial.rename(out)
    return info


def prune(parent: Path, keep: Path) -> list[Path]:
    """Remove the other classifiers under ``parent`` (older training data), and
    interrupted trainings; the removed folders."""
    removed = []
    for folder in parent.iterdir() if parent.is_dir() else []:
        if folder.is_dir() and folder != keep and not _training_now(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _training_now(folder: Path) -> bool:
    """A ``.partial-<pid>`` folder whose process is alive (another instance is training)."""
    _, _, pid = folder.name.partition(".partial-")
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_trained(folder: Path) -> bool:
    return (folder / DONE).is_file()


class UrgencyClassifier:
    """A trained classifier, loaded once; ``probability`` is CPU work (call it off the event loop)."""

    def __init__(self, folder: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from setfit import SetFitModel

        self.folder = folder
        self.info = json.loads((folder / DONE).read_text(encoding="utf-8"))
        self._model = SetFitModel.from_pretrained(str(folder))
        # Customers repeat themselves ("hi", "thanks", "is anyone there?"): a
        # forward pass (~20 ms on a CPU core) once per distinct text, as the
        # knowledge base caches its query vectors.
        self._probability = functools.lru_cache(maxsize=CACHE_SIZE)(self._one)

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        scores = self._model.predict_proba(list(texts), as_numpy=True)
        return [float(row[1]) for row in scores]

    def _one(self, text: str) -> float:
        [probability] = self.probabilities([text])
        return probability

    def read(self, text: str) -> dict[str, Any]:
        """The triage entry the bot's routing reads (``metadata.triage.classifier``)."""
        probability = self._probability(" ".join(text.split()))
        return {
            "probability": round(probability, 4),
            "urgent": probability >= URGENT_FROM,
            "not_urgent": probability < NOT_URGENT_BELOW,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.urgency", description="Train the urgency classifier.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the classifier (replaced)")
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES)
    parser.add_argument("--nlu", type=Path, default=NLU_FILE)
    parser.add_argument("--model", type=Path, help="base sentence-transformer folder (default: the KB's MiniLM)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    if args.model is None:
        from knowledge_base.embeddings import default_model_path

        args.model = default_model_path()
    texts, labels = training_set(args.examples, args.nlu)
    info = train(texts, labels, args.model, args.out, steps=args.steps)
    print(json.dumps(info) if args.json else f"trained {args.out} in {info['seconds']} s ({info['examples']} examples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
