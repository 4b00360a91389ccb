"""Replay the bot's urgency routing over recorded messages, with other urgent examples or another classifier.

    .venv/bin/python bench/triage_replay.py [OUTCOMES] [--examples FILE] [--classifier DIR] [--quick]

OUTCOMES is a ``bench/bot_domains.py --outcomes`` file: every message of a
run with what Rasa read of it (its intent ranking, which no urgency change
alters) and what the hub's triage read. This script runs the hub's real
triage (``hub.bot.triage.Triage``: the examples' match, the classifier, the
sentences of a wrapped or long message, the safety phrases) again on each
message, with the examples file and the classifier folder given, and sends
the result through the bot's real ``bot.actions.routing.route``: the urgent
recall and the false-urgent rate that examples file and classifier would
have had, in about three minutes for a development run, instead of a
classifier training (~10 minutes) and a run through the whole hub with
Rasa (~7).

Defaults: the shipped ``bot/urgent_examples.yml``, and the classifier
``bench/bot_domains.py`` trained for it (``bench/_common.URGENCY_CACHE``;
train another with ``python -m bot.urgency --out DIR --examples FILE``).
The message is read as the search read it in the run (the recorded
``searched``), so no knowledge base is loaded; the admin's keyword rules are
not replayed (the bench sets none). Figures only cover the urgency routing:
what the knowledge base answered is the run's.

It checks itself: with the examples and classifier of the run, the replay
routes every message as the run did (``agrees_with_run``: 140 of 140 on the
development help centres' long e-mails). Files recorded before
``bot_domains.py`` parsed the message as searched (the text the bridge sends
Rasa) hold Rasa's reading of the message as typed: a few wrapped or long
messages then differ.

Rasa's reading of a long message's sentences (``hub.bot.triage``) is taken
from the run too (the triage records it, ``rasa_read``); a sentence other
examples or another classifier make lean urgent that Rasa was not asked about
in the run counts as leaning, as when Rasa does not answer, and is counted
(``sentences_rasa_did_not_read``).

Without OUTCOMES it records them first: ``bot_domains.py --quick``'s 24
messages (``make bench``). ``--quick`` with a file: every seventh message.
Under a minute either way once the classifier is trained. Prints the messages
whose routing differs from the run's, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import URGENCY_CACHE, emit  # noqa: E402

from bot import urgency  # noqa: E402
from bot.actions.routing import route  # noqa: E402
from bot.triage import DEFAULT_EXAMPLES  # noqa: E402
from hub.bot.triage import Triage  # noqa: E402
from knowledge_base.embeddings import SentenceTransformerEmbedder  # noqa: E402

QUICK_EVERY = 7


def load_rows(path: Path, quick: bool) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [i for i, row in enumerate(rows) if "intent_ranking" not in row or "triage" not in row]
    if missing:
        raise SystemExit(f"{path}: rows {missing[:5]} have no recorded intent ranking or triage (an older run?)")
    return rows[::QUICK_EVERY] if quick else rows


def record_quick_outcomes() -> Path:
    """``bot_domains.py --quick --outcomes`` into a temporary file (its report on stderr)."""
    path = Path(tempfile.mkdtemp(prefix="triage-replay-")) / "outcomes.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "bot_domains.py"), "--quick", "--outcomes", str(path)]
    subprocess.run(command, check=True, stdout=sys.stderr)
    return path


def urgent_routed(row: dict[str, Any], triage: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
    parse = {"intent": row["intent"], "intent_ranking": row["intent_ranking"], "metadata": {"triage": triage}}
    decided = route(parse)
    return decided.priority == "urgent", decided.signals


async def replay(rows: list[dict[str, Any]], examples: Path, classifier: Path) -> dict[str, Any]:
    embedder = SentenceTransformerEmbedder()

    async def embed(texts: list[str]) -> Any:
        return await asyncio.to_thread(embedder.embed_documents, texts)

    async def embed_query(text: str) -> Any:  # one text at a time, as the knowledge base embeds a query
        return await asyncio.to_thread(embedder.embed_query, text)

    searched = {row["q"]: row["triage"].get("searched") for row in rows}

    async def as_searched(text: str) -> str:
        return searched.get(text) or text

    # Rasa's readings of long messages' sentences, as recorded in the run (no Rasa runs here). A
    # sentence it was not asked about in the run is read as Rasa not answering would be: leaning.
    # Runs recorded before the triage kept the urgent_issue score have the top intent only.
    rasa_read = {asked["sentence"]: asked for row in rows for asked in row["triage"].get("rasa_read") or []}
    unrecorded: list[str] = []

    async def parse(text: str) -> dict[str, Any]:
        if text not in rasa_read:
            unrecorded.append(text)
            raise LookupError("not read by Rasa in the run")
        read = rasa_read[text]
        ranking = [{"name": "urgent_issue", "confidence": read["urgent_issue"]}] if "urgent_issue" in read else []
        return {"intent": {"name": read["intent"]}, "intent_ranking": ranking}

    triage = Triage(
        embed=embed, rules=None, embed_query=embed_query, examples_path=examples, as_searched=as_searched, parse=parse
    )
    await triage.load()
    if triage.examples is None:
        raise SystemExit(f"{examples}: the urgent examples did not load (see the log above)")
    triage.classifier = urgency.UrgencyClassifier(classifier)
    counts = {"urgent": 0, "caught": 0, "not_urgent": 0, "false_urgent": 0, "agrees_with_run": 0}
    changed = []
    for row in rows:
        urgent, signals = urgent_routed(row, await triage(row["q"]))
        in_run = row["priority"] == "urgent"
        counts["agrees_with_run"] += urgent == in_run
        if urgent != in_run:
            changed.append(
                {"industry": row["industry"], "kind": row["kind"], "urgent": urgent, "signals": signals, "q": row["q"]}
            )
        if row["kind"] == "urgent":
            counts["urgent"] += 1
            counts["caught"] += urgent
        else:
            counts["not_urgent"] += 1
            counts["false_urgent"] += urgent
    return {
        "messages": len(rows),
        "counts": counts,
        "urgent_recall": round(counts["caught"] / max(counts["urgent"], 1), 4),
        "false_urgent_rate": round(counts["false_urgent"] / max(counts["not_urgent"], 1), 4),
        "calibration": triage.examples.calibration.as_dict(),
        "sentences_rasa_did_not_read": len(unrecorded),
        "changed": changed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outcomes", type=Path, nargs="?", help="a bench/bot_domains.py --outcomes file")
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES, help="urgent examples (YAML)")
    parser.add_argument("--classifier", type=Path, help="a trained urgency classifier's folder")
    parser.add_argument("--quick", action="store_true", help=f"every {QUICK_EVERY}th message")
    args = parser.parse_args(argv)
    folder = args.classifier or urgency.folder_for(URGENCY_CACHE, args.examples)
    if not urgency.is_trained(folder):
        raise SystemExit(
            f"no trained classifier at {folder}: run bench/bot_domains.py with these examples, or "
            f"python -m bot.urgency --out {folder} --examples {args.examples}"
        )
    if args.outcomes is None:
        args.outcomes = record_quick_outcomes()
        rows = load_rows(args.outcomes, quick=False)
    else:
        rows = load_rows(args.outcomes, args.quick)
    result = asyncio.run(replay(rows, args.examples, folder))
    changed = result.pop("changed")
    counts = result["counts"]
    print(f"{args.outcomes}: {result['messages']} messages, examples {args.examples}, classifier {folder}")
    print(f"  urgent recall {result['urgent_recall']} ({counts['caught']} of {counts['urgent']})")
    print(f"  false urgent {result['false_urgent_rate']} ({counts['false_urgent']} of {counts['not_urgent']})")
    print(f"  routed as in the run: {counts['agrees_with_run']} of {result['messages']}")
    for c in changed:
        now = "urgent" if c["urgent"] else "not urgent"
        print(f"  [{c['industry']}] {c['kind']}, now {now} {list(c['signals'])}: {' '.join(c['q'].split())[:140]}")
    emit(
        {
            "benchmark": "triage_replay",
            "outcomes": str(args.outcomes),
            "examples": str(args.examples),
            "classifier": str(folder),
            "quick": args.quick,
            **result,
            "changed": len(changed),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
