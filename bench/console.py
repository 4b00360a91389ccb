"""The console's inbox with 100,000 conversations and 1,000,000 messages on SQLite.

    .venv/bin/python bench/console.py [--quick] [--keep DIR]

1. Seeds a temporary SQLite database (migrated by the hub's own Alembic
   migrations) with bulk inserts, not through the ingest path: 100,000
   conversations over 90 days (10 % not resolved: 10,000 open, pending or
   snoozed, handed to 50 agents in 5 teams or waiting for one), 1,000,000
   messages of words drawn from a 3,000-word vocabulary, tickets with SLA
   deadlines for every handed-off conversation. The FTS5 index is rebuilt
   once at the end (what the migration's ``rebuild`` does). ``--quick``: a
   tenth.
2. Server time of ``GET /console`` through the real aiohttp app (the hub
   with the console, an agent signed in with a password): the first page of
   each view, a search, and the next page (the cursor of the first), p50 and
   p99 over repeated requests. Target p99 < 100 ms.
3. Event-to-screen latency: an SSE client connected to ``/console/events``
   while messages arrive on the fake channel's webhook; from just before the
   webhook POST to the event read by the client, p50/p99 over ~100
   messages. Target p99 < 500 ms.

Prints figures and one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SECRET = "bench-secret"
PASSWORD = "bench-password-0123456789"
AGENTS = 50
TEAMS = ["support", "billing", "tech", "sales", "vip"]
CHANNELS = ["webchat"] * 5 + ["email"] * 3 + ["sms"] * 2 + ["whatsapp"]
PRIORITIES = ["urgent"] * 3 + ["high"] * 17 + ["normal"] * 65 + ["low"] * 15
SLA_MINUTES = {"urgent": (15, 240), "high": (60, 480), "normal": (240, 1440), "low": (480, 2880)}
STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime on SQLite


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).strftime(STAMP)


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(size * 2)}
    return sorted(words)[:size]


def seed(path: Path, conversations: int, messages_per: int, now: datetime, rng: random.Random) -> dict[str, Any]:
    """Bulk rows straight into the migrated file; returns what the run needs to know."""
    words = vocabulary(rng)
    # Zipf-ish: a few words are common, most rare (as in real text).
    cumulative = list(itertools.accumulate(1 / (i + 1) for i in range(len(words))))
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA journal_mode=WAL")
    # The FTS5 index is built once at the end, not a row at a time.
    db.execute("DROP TRIGGER messages_fts_insert")
    created = _stamp(now - timedelta(days=120))
    with db:
        db.executemany(
            "INSERT INTO users (id, name, email, role, extra, created_at) VALUES (?, ?, ?, ?, '{}', ?)",
            [(i, f"Agent {i}", f"agent{i}@bench.test", "agent", created) for i in range(1, AGENTS + 1)],
        )
        db.executemany(
            "INSERT INTO agent_profiles (user_id, team, skills, capacity, senior, on_duty, open_tickets,"
            " last_assigned_seq, updated_at) VALUES (?, ?, '[]', 500, 0, 1, 0, 0, ?)",
            [(i, TEAMS[i % len(TEAMS)], created) for i in range(1, AGENTS + 1)],
        )
    span = timedelta(days=90).total_seconds()
    message_id = 0
    batch_size = 5000
    for start in range(0, conversations, batch_size):
        contact_rows, identity_rows, conversation_rows, message_rows, ticket_rows = [], [], [], [], []
        for cid in range(start + 1, min(conversations, start + batch_size) + 1):
            last = now - timedelta(seconds=rng.random() ** 2 * span)  # recent ones more often
            opened = last - timedelta(minutes=rng.randint(5, 600))
            channel = rng.choice(CHANNELS)
            named = rng.random() < 0.6
            contact_rows.append((cid, f"Customer {cid}" if named else None, _stamp(opened), _stamp(opened)))
            kind = "email" if channel == "email" else ("phone" if channel in ("sms", "whatsapp") else "webchat")
            address = {"email": f"c{cid}@example.com", "phone": f"+1555{cid:07d}", "webchat": f"v-{cid}"}[kind]
            identity_rows.append((cid, cid, kind, address, _stamp(opened)))
            open_ = rng.random() < 0.10
            status = rng.choice(["open"] * 7 + ["pending"] * 2 + ["snoozed"]) if open_ else "resolved"
            priority = rng.choice(PRIORITIES)
            human = rng.random() < (0.6 if open_ else 0.3)
            assignee = rng.randint(1, AGENTS) if human and rng.random() < 0.7 else None
            conversation_rows.append(
                (
                    cid, cid, channel, cid, status, priority, "human" if human else "bot", assignee,
                    _stamp(opened), _stamp(last), _stamp(last), None if open_ else _stamp(last),
                )
            )  # fmt: skip
            for i in range(messages_per):
                message_id += 1
                at = opened + (last - opened) * (i + 1) / messages_per
                text = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(4, 24)))
                inbound = i % 2 == 0
                message_rows.append(
                    (
                        message_id, cid, cid, channel, "inbound" if inbound else "outbound", "message",
                        "customer" if inbound else rng.choice(["bot", "agent"]), text,
                        "received" if inbound else "delivered", _stamp(at),
                    )
                )  # fmt: skip
            if human:
                first, resolve = SLA_MINUTES[priority]
                ticket_created = opened + timedelta(minutes=1)
                answered = rng.random() < 0.5
                ticket_rows.append(
                    (
                        cid, cid, cid if open_ else None, "open" if open_ else "resolved", priority, assignee,
                        TEAMS[assignee % len(TEAMS)] if assignee else rng.choice(TEAMS),
                        _stamp(ticket_created), _stamp(last), None if open_ else _stamp(last),
                        _stamp(ticket_created + timedelta(minutes=2)) if answered else None,
                        _stamp(ticket_created + timedelta(minutes=first)),
                        _stamp(ticket_created + timedelta(minutes=resolve)),
                    )
                )  # fmt: skip
        with db:
            db.executemany(
                "INSERT INTO contacts (id, name, attributes, tags, created_at, updated_at) VALUES (?, ?, '{}', '[]', ?, ?)",
                contact_rows,
            )
            db.executemany(
                "INSERT INTO identities (id, contact_id, channel, address, created_at) VALUES (?, ?, ?, ?, ?)",
                identity_rows,
            )
            db.executemany(
                "INSERT INTO conversations (id, contact_id, channel, identity_id, status, priority, handler,"
                " assignee_id, created_at, updated_at, last_message_at, resolved_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                conversation_rows,
            )
            db.executemany(
                "INSERT INTO messages (id, conversation_id, contact_id, channel, direction, kind, author_kind, body,"
                " attachments, delivery_status, meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, '{}', ?)",
                message_rows,
            )
            db.executemany(
                "INSERT INTO tickets (conversation_id, contact_id, open_conversation_id, status, priority, assignee_id,"
                " team, source, reason, summary, kb_hits, created_at, updated_at, resolved_at, first_response_at,"
                " first_response_due, resolution_due, sla_paused_seconds, escalations)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'bot', '', '', '[]', ?, ?, ?, ?, ?, ?, 0, 0)",
                ticket_rows,
            )
    started = time.perf_counter()
    with db:
        db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        db.execute(
            "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
            "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
        )
    fts_seconds = time.perf_counter() - started
    db.close()
    common = words[0]
    rare = words[-1]
    return {"messages": message_id, "fts_rebuild_s": round(fts_seconds, 1), "common_word": common, "rare_word": rare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (well under 60 s)")
    parser.add_argument("--keep", type=Path, help="seed into DIR and keep it (for EXPLAIN QUERY PLAN)")
    args = parser.parse_args()
    from hub.storage.migrate import upgrade

    rng = random.Random(16)
    conversations = 10_000 if args.quick else 100_000
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-console-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "hub.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    now = datetime.now(UTC)
    started = time.perf_counter()
    seeded = seed(path, conversations, 10, now, rng)
    seeded["seed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(seeded))


if __name__ == "__main__":
    main()
