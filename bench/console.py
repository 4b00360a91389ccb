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
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import ROOT, emit, free_port, percentile, wait_ready

SECRET = "bench-secret"
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
                first_due = ticket_created + timedelta(minutes=first)
                resolution_due = ticket_created + timedelta(minutes=resolve)
                # Breaches already recorded, as the SLA scheduler would have:
                # the hub starts with nothing to escalate.
                first_breached = first_due if open_ and not answered and first_due < now else None
                resolution_breached = resolution_due if open_ and resolution_due < now else None
                ticket_rows.append(
                    (
                        cid, cid, cid if open_ else None, "open" if open_ else "resolved", priority, assignee,
                        TEAMS[assignee % len(TEAMS)] if assignee else rng.choice(TEAMS),
                        _stamp(ticket_created), _stamp(last), None if open_ else _stamp(last),
                        _stamp(ticket_created + timedelta(minutes=2)) if answered else None,
                        _stamp(first_due), _stamp(resolution_due),
                        first_breached and _stamp(first_breached), resolution_breached and _stamp(resolution_breached),
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
                " first_response_due, resolution_due, first_response_breached_at, resolution_breached_at,"
                " sla_paused_seconds, escalations)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'bot', '', '', '[]', ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
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
    # words[0] is in ~80 % of messages, words[60] in ~2.5 %, the last in a few.
    return {
        "messages": message_id,
        "fts_rebuild_s": round(fts_seconds, 1),
        "common_word": words[0],
        "mid_word": words[60],
        "rare_word": words[-1],
    }


# --- the hub, in a child process ------------------------------------------------------
def serve(port: int, workdir: Path) -> None:
    """The real app (console included) on uvloop, as ``hub serve`` runs it, with
    one bench-only middleware that reports each request's server time."""
    import logging

    from aiohttp import web

    from hub.__main__ import new_event_loop
    from hub.app import create_app, freeze_after_startup

    logging.basicConfig(level=logging.WARNING)
    app = create_app(settings(workdir))

    @web.middleware
    async def server_time(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        if not response.prepared:
            response.headers["X-Server-Ms"] = f"{(time.perf_counter() - started) * 1000:.3f}"
        return response

    app.middlewares.insert(0, server_time)
    freeze_after_startup(app)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_event_loop("uvloop"))


def settings(workdir: Path) -> Any:
    from hub.config import Settings

    return Settings(
        database_url=f"sqlite+aiosqlite:///{workdir / 'hub.db'}",
        channels="fake",
        fake_secret=SECRET,  # type: ignore[arg-type]
        data_dir=workdir,
        bot="none",
        kb_enabled=False,
        _env_file=None,  # type: ignore[call-arg]
    )


async def session_cookie(workdir: Path, user_id: int) -> dict[str, str]:
    """A signed-in console session for ``user_id`` (as the sign-in form would open)."""
    from hub.console import sessions
    from hub.storage import open_database

    config = settings(workdir)
    db = open_database(config.database_url)
    try:
        session_id = await db.write(
            sessions.open_session,
            user_id,
            stage=sessions.Stage.FULL,
            now=datetime.now(UTC),
            idle=timedelta(hours=8),
            lifetime=timedelta(days=1),
            ip="127.0.0.1",
            user_agent="bench",
        )
    finally:
        await db.close()
    return {sessions.session_cookie_name(config): session_id}


# --- measurements -----------------------------------------------------------------------
async def page_times(port: int, cookies: dict[str, str], seeded: dict[str, Any], repeat: int) -> dict[str, Any]:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {}
    async with aiohttp.ClientSession(base_url=base, cookies=cookies) as client:

        async def timed(name: str, path: str, params: dict[str, str]) -> str:
            server, html = [], ""
            for n in range(repeat + 5):
                async with client.get(path, params=params, allow_redirects=False) as response:
                    html = await response.text()
                    if response.status != 200:
                        raise RuntimeError(f"{name}: HTTP {response.status} {html[:200]}")
                    if n >= 5:  # after a warm-up
                        server.append(float(response.headers["X-Server-Ms"]))
            rows = html.count('class="inbox-row')
            figures[name] = {
                "p50_ms": round(percentile(server, 50), 2),
                "p99_ms": round(percentile(server, 99), 2),
                "rows": rows,
            }
            print(
                f"{name:28} p50 {figures[name]['p50_ms']:7.2f} ms  p99 {figures[name]['p99_ms']:7.2f} ms  rows {rows}"
            )
            return html

        for view in ("mine", "unassigned", "urgent", "open", "resolved"):
            html = await timed(f"first_page_{view}", "/console", {"view": view})
            if view == "open":
                found = re.search(r'data-cursor="([^"]+)"', html)
                assert found is not None, "no next page"
                cursor = found.group(1)
        await timed("next_page_open", "/console/inbox/page", {"view": "open", "cursor": cursor})
        await timed("search_open_mid_word", "/console", {"view": "open", "q": seeded["mid_word"]})
        await timed("search_resolved_mid_word", "/console", {"view": "resolved", "q": seeded["mid_word"]})
        await timed(
            "search_open_two_words", "/console", {"view": "open", "q": f"{seeded['mid_word']} {seeded['common_word']}"}
        )
        await timed("search_open_common_word", "/console", {"view": "open", "q": seeded["common_word"]})
        await timed("search_open_rare_word", "/console", {"view": "open", "q": seeded["rare_word"]})
        await timed("filter_open_sms_billing", "/console", {"view": "open", "channel": "sms", "team": "billing"})
    return figures


async def event_to_screen(port: int, cookies: dict[str, str], messages: int) -> dict[str, Any]:
    """From just before an inbound webhook to its event read off a connected
    console's stream: what a person watching the inbox waits for."""
    import aiohttp

    from channels.fake import sign

    base = f"http://127.0.0.1:{port}"
    arrived: dict[int, float] = {}
    got_one = asyncio.Event()
    async with aiohttp.ClientSession(base_url=base, cookies=cookies) as console, aiohttp.ClientSession() as sender:
        stream = await console.get("/console/events", timeout=aiohttp.ClientTimeout(total=None))

        async def read() -> None:
            async for raw in stream.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    if data.get("what") == "message" and data.get("direction") == "inbound":
                        arrived[data["message_id"]] = time.perf_counter()
                        got_one.set()

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.2)
        latencies = []
        run = os.urandom(3).hex()
        for n in range(messages):
            raw = json.dumps({"from": f"live-{n % 20}", "text": f"live message {n}", "id": f"{run}-{n}"}).encode()
            started = time.perf_counter()
            async with sender.post(
                f"{base}/channels/fake/webhook",
                data=raw,
                headers={**sign(SECRET, raw), "Content-Type": "application/json"},
            ) as response:
                body = await response.json()
            message_id = body["received"][0]["message_id"]
            deadline = started + 5
            while message_id not in arrived and time.perf_counter() < deadline:
                got_one.clear()
                try:
                    await asyncio.wait_for(got_one.wait(), max(0.001, deadline - time.perf_counter()))
                except TimeoutError:
                    break
            if message_id not in arrived:
                raise RuntimeError(f"no event for message {message_id} within 5 s")
            latencies.append((arrived[message_id] - started) * 1000)
            await asyncio.sleep(0.02)
        reader.cancel()
        stream.close()
    return {
        "messages": messages,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


def erasure_purge_seconds(path: Path) -> float:
    """What an erasure's purge of the FTS5 index costs at this size (it holds the writer)."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute("DELETE FROM messages WHERE conversation_id = 1")
        started = time.perf_counter()
        with db:
            db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
        return time.perf_counter() - started
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (well under 60 s)")
    parser.add_argument(
        "--keep", type=Path, help="seed into DIR and keep it (for EXPLAIN QUERY PLAN); a DIR seeded before is reused"
    )
    parser.add_argument("--seed-only", action="store_true", help="with --keep: seed, measure nothing")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.workdir)
        return
    from hub.storage.migrate import upgrade

    rng = random.Random(16)
    conversations = 10_000 if args.quick else 100_000
    repeat = 40 if args.quick else 200
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-console-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        path = workdir / "hub.db"
        if args.keep is not None and path.exists():  # seeded by an earlier --keep run: measure again
            words = vocabulary(rng)
            seeded = {"messages": conversations * 10, "seed_s": 0.0, "common_word": words[0], "mid_word": words[60]}
            seeded["rare_word"] = words[-1]
        else:
            upgrade(f"sqlite+aiosqlite:///{path}")
            started = time.perf_counter()
            seeded = seed(path, conversations, 10, datetime.now(UTC), rng)
            seeded["seed_s"] = round(time.perf_counter() - started, 1)
        print(f"seeded {conversations} conversations, {seeded['messages']} messages in {seeded['seed_s']} s")
        if args.seed_only:
            print(json.dumps(seeded))
            return
        cookies = asyncio.run(session_cookie(workdir, 7))  # agent 7: has conversations of their own
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(port), "--workdir", str(workdir)], cwd=ROOT
        )
        try:
            wait_ready(port, proc)
            pages = asyncio.run(page_times(port, cookies, seeded, repeat))
            live = asyncio.run(event_to_screen(port, cookies, 30 if args.quick else 100))
            print(f"event to screen: p50 {live['p50_ms']} ms, p99 {live['p99_ms']} ms over {live['messages']} messages")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        purge = erasure_purge_seconds(path)
        print(f"an erasure's FTS5 purge (optimize) at this size: {purge:.2f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    slowest_first_page = max(v["p99_ms"] for k, v in pages.items() if k.startswith("first_page"))
    emit(
        {
            "conversations": conversations,
            "messages": seeded["messages"],
            "seed_s": seeded["seed_s"],
            "pages": pages,
            "first_page_p99_ms_max": slowest_first_page,
            "first_page_target_met": slowest_first_page < 100,
            "event_to_screen": live,
            "event_to_screen_target_met": live["p99_ms"] < 500,
            "erasure_fts_purge_s": round(purge, 2),
        }
    )


if __name__ == "__main__":
    main()
