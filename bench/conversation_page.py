"""The console's conversation page with 100,000 conversations and 1,000,000 messages on SQLite.

    .venv/bin/python bench/conversation_page.py [--quick]

Seeds the database as ``bench/console.py`` does (its ``seed``), gives one
contact a long history (20,000 more messages, notes and events across two
channels), then times, through the real aiohttp app with a signed-in agent:
``GET /console/conversations/{id}`` for random conversations, the same for
the long-history contact, ``/panel`` (what a live update re-reads) and
``/timeline?before=`` (a page further back). p50/p99 in ms; target p99 < 100 ms.
``--quick``: a tenth of the data. Prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import emit, percentile
from console import _stamp, seed

LONG_HISTORY = 20_000


def lengthen(path: Path, contact_id: int, now: datetime, count: int) -> int:
    """``count`` more timeline rows for ``contact_id``'s first conversation (and a second, by e-mail)."""
    db = sqlite3.connect(path)
    try:
        (conversation_id, channel) = db.execute(
            "SELECT id, channel FROM conversations WHERE contact_id = ? ORDER BY id LIMIT 1", (contact_id,)
        ).fetchone()
        (next_id,) = db.execute("SELECT max(id) + 1 FROM messages").fetchone()
        kinds = [
            ("inbound", "message", "customer", "received"),
            ("outbound", "message", "agent", "delivered"),
            ("outbound", "message", "bot", "sent"),
            ("internal", "note", "agent", "none"),
            ("internal", "event", "system", "none"),
        ]
        rows = []
        for n in range(count):
            direction, kind, author, status = kinds[n % len(kinds)]
            at = now - timedelta(seconds=(count - n) * 30)
            meta = '{"event": "assignee-changed", "assignee": 1}' if kind == "event" else "{}"
            rows.append(
                (
                    next_id + n,
                    conversation_id,
                    contact_id,
                    channel,
                    direction,
                    kind,
                    author,
                    1 if author == "agent" else None,
                    f"message {n} of a long history",
                    status,
                    meta,
                    _stamp(at),
                )
            )
        with db:
            db.executemany(
                "INSERT INTO messages (id, conversation_id, contact_id, channel, direction, kind, author_kind,"
                " author_id, body, attachments, delivery_status, meta, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, ?, ?)",
                rows,
            )
        return int(conversation_id)
    finally:
        db.close()


async def measure(url: str, workdir: Path, conversations: int, long_conversation: int, rounds: int) -> dict[str, Any]:
    from aiohttp.test_utils import TestClient, TestServer
    from pydantic import SecretStr

    from hub import keys
    from hub.app import create_app
    from hub.config import Settings
    from hub.console import sessions
    from hub.console.sessions import Stage

    settings = Settings(
        database_url=url,
        data_dir=workdir / "data",
        channels="fake",
        fake_secret=SecretStr("bench"),
        kb_enabled=False,
        bot="none",
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        db = app[keys.DATABASE]
        session_id = await db.write(
            sessions.open_session,
            1,
            stage=Stage.FULL,
            now=app[keys.CLOCK].now(),
            idle=timedelta(hours=1),
            lifetime=timedelta(hours=2),
        )
        client.session.cookie_jar.update_cookies({sessions.session_cookie_name(settings): session_id})
        # The seeded tickets' overdue SLAs are escalated at start-up (a burst of
        # writes that is not the page's): let that pass finish first.
        while await app[keys.TICKETS].check_due():
            pass
        rng = random.Random(7)

        async def timed(path: str) -> float:
            started = time.perf_counter()
            async with client.get(path) as response:
                body = await response.read()
                assert response.status == 200, (path, response.status, body[:300])
            return (time.perf_counter() - started) * 1000

        # Warm up (templates compiled, statements cached).
        for _ in range(20):
            await timed(f"/console/conversations/{rng.randint(1, conversations)}")
        results: dict[str, list[float]] = {"page": [], "page_long_history": [], "panel": [], "earlier_page": []}
        async with client.get(f"/console/conversations/{long_conversation}") as response:
            text = await response.text()
        cursor = text.split('data-prev-cursor="', 1)[1].split('"', 1)[0]
        for _ in range(rounds):
            results["page"].append(await timed(f"/console/conversations/{rng.randint(1, conversations)}"))
            results["page_long_history"].append(await timed(f"/console/conversations/{long_conversation}"))
            results["panel"].append(await timed(f"/console/conversations/{long_conversation}/panel"))
            results["earlier_page"].append(
                await timed(f"/console/conversations/{long_conversation}/timeline?before={cursor}")
            )
        return {
            f"{name}_ms": {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2)}
            for name, values in results.items()
        }
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    from hub.storage.migrate import upgrade

    rng = random.Random(16)
    conversations = 10_000 if args.quick else 100_000
    workdir = Path(tempfile.mkdtemp(prefix="bench-conversation-"))
    path = workdir / "hub.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    now = datetime.now(UTC)
    started = time.perf_counter()
    seeded = seed(path, conversations, 10, now, rng)
    long_conversation = lengthen(path, 1, now, LONG_HISTORY)
    seconds = round(time.perf_counter() - started, 1)
    print(f"seeded {conversations} conversations, {seeded['messages'] + LONG_HISTORY} messages in {seconds} s")
    figures = asyncio.run(measure(url, workdir, conversations, long_conversation, args.rounds))
    for name, value in figures.items():
        print(f"{name:28} p50 {value['p50']:7.2f}  p99 {value['p99']:7.2f}")
    emit(
        {
            "conversations": conversations,
            "messages": seeded["messages"] + LONG_HISTORY,
            "long_history": LONG_HISTORY,
            "rounds": args.rounds,
            **figures,
        }
    )


if __name__ == "__main__":
    main()
