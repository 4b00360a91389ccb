"""Helpers shared by the benchmark scripts (run them from the project's .venv)."""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Trained urgency classifiers (HUB_BOT_URGENCY_DIR of the benchmarks' hubs):
# training one takes ~10 minutes, so every run after the first reuses it.
URGENCY_CACHE = Path(tempfile.gettempdir()) / "servicehub-bot-domains" / "urgency"


# -- customers' messages as they type them (kb_search.py and bot_domains.py: --typos, --wrapped) -----

TYPO_RATE = 0.25
TYPO_MIN_LENGTH = 5
# A changed or added letter is one next to it on a QWERTY keyboard, as a hurried thumb types it.
KEYBOARD_NEIGHBOURS = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "qwsz vghn xdfv serfcx wsdr drtgvc ftyhbv gyujnb ujko huikmn jiolm kop njk bhjm iklp ol wa edft awedxz"
        " rfgy yhji cfgb qase zsdc tghu asx".split(),
        strict=True,
    )
)


def misspell(text: str, rng: random.Random) -> str:
    """``text`` with typos: see ``--typos`` in the module docstring."""

    def typo(word: str) -> str:
        if len(word) < TYPO_MIN_LENGTH or not word.isalpha() or rng.random() >= TYPO_RATE:
            return word
        at = rng.randrange(1, len(word) - 1)
        kind = rng.randrange(4)
        if kind == 0:  # dropped
            return word[:at] + word[at + 1 :]
        if kind == 1:  # swapped
            return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
        neighbour = rng.choice(KEYBOARD_NEIGHBOURS.get(word[at].lower(), "e"))
        if kind == 2:  # changed
            return word[:at] + neighbour + word[at + 1 :]
        return word[:at] + neighbour + word[at:]  # added

    return " ".join(typo(word) for word in text.split(" "))


PLEASANTRIES = ROOT / "bench" / "data" / "pleasantries.yml"


def wrap(text: str, rng: random.Random, openings: Sequence[str], closings: Sequence[str]) -> str:
    """``text`` between an opening and a closing, each on its own line or not."""
    before, after = rng.choice(openings), rng.choice(closings)
    return before + rng.choice(" \n") + text + rng.choice(" \n") + after


def pleasantries(path: Path, half: str | None) -> tuple[list[str], list[str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    start = {"even": 0, "odd": 1}.get(half or "", 0)
    step = 2 if half else 1
    return list(data["openings"])[start::step], list(data["closings"])[start::step]


def add_as_typed_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--typos``, ``--wrapped [FILE]``, ``--wrapped-half`` and ``--long``; ``what``: "send the questions"..."""
    parser.add_argument("--typos", action="store_true", help=f"{what} misspelt as a hurried customer types")
    parser.add_argument(
        "--wrapped",
        type=Path,
        nargs="?",
        const=PLEASANTRIES,
        default=None,
        help=f"{what} wrapped in an opening and a closing (default file: bench/data/pleasantries.yml)",
    )
    parser.add_argument("--wrapped-half", choices=("even", "odd"), default=None, help="draw from half of the file")
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"{what} as long e-mails (each industry's long.yml), only the questions that have one",
    )
    parser.add_argument("--no-subjects", action="store_true", help="with --long: without their subject lines")


LONG_MESSAGES = "long.yml"


@dataclass(frozen=True)
class LongMessage:
    email: str
    subject: str | None = None  # its subject line, when the file has one


def long_messages(industry: Path) -> dict[str, LongMessage]:
    """An industry's long e-mails by the question each one asks (``--long``): its ``long.yml``,
    ``messages: [{q, kind, email, subject?}]``, written for the question ``q`` of its
    questions.yml, meaning and kind unchanged."""
    path = industry / LONG_MESSAGES
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        str(item["q"]): LongMessage(email=str(item["email"]), subject=item.get("subject") or None)
        for item in data.get("messages") or []
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int | None = None) -> int:
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def emit(figures: dict[str, Any]) -> None:
    """Print the figures as one JSON object on the last line."""
    print(json.dumps(figures, sort_keys=True), flush=True)


def wait_ready(port: int, proc: Any, timeout: float = 60) -> None:
    """Wait until ``proc`` (a server child) accepts connections on ``port``."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


async def postgres_database(base: str) -> tuple[str, Any]:
    """A new database on the server of ``base``, and a coroutine that drops it."""
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(base)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(
            host=server.host,
            port=server.port or 5432,
            user=server.username,
            password=server.password,
            database=server.database,
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    name = f"hub_bench_{uuid.uuid4().hex[:12]}"
    await admin(f'CREATE DATABASE "{name}"')
    return server.set(database=name).render_as_string(hide_password=False), admin(
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    )
