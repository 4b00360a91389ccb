"""Inbound messages through the hub's HTTP ingest path (fake channel, SQLite)
vs. a bare aiohttp handler doing one SQLite insert.

    .venv/bin/python bench/ingest.py [--quick] [--messages N] [--concurrency C]

Each server runs in its own process, pinned to one core, and the load
generator to another (``--no-pin``: wherever the OS puts them); the same
load generator drives both, and both servers run on the event loop ``hub
serve`` uses (uvloop). Runs on this 2-core machine vary by up
to ±20 % from one to the next, so the two servers take turns for five
rounds (bare, hub, bare, hub, ...) and the figures are each one's median
round; the ratio is of the medians. Prints every round, then one JSON object
on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, free_port, percentile, wait_ready

SECRET = "bench-secret"


# --- servers (run in a child process) -------------------------------------------
def serve_hub(port: int, workdir: Path) -> None:
    import logging

    from aiohttp import web

    from hub.__main__ import new_event_loop
    from hub.app import create_app, freeze_after_startup
    from hub.config import Settings
    from hub.storage.migrate import upgrade

    logging.basicConfig(level=logging.WARNING)
    url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
    upgrade(url)
    settings = Settings(
        database_url=url,
        channels="fake",
        fake_secret=SECRET,
        data_dir=workdir,
        bot="none",
        kb_enabled=False,
        _env_file=None,
    )
    app = create_app(settings)
    freeze_after_startup(app)  # as hub serve does
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_event_loop(settings.event_loop))


def serve_bare(port: int, workdir: Path) -> None:
    import aiosqlite
    from aiohttp import web

    from hub.__main__ import new_event_loop

    async def setup(app: web.Application):  # type: ignore[no-untyped-def]
        db = await aiosqlite.connect(workdir / "bare.db")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, sender TEXT, body TEXT, external_id TEXT)"
        )
        app["db"] = db
        yield
        await db.close()

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        db = request.app["db"]
        cursor = await db.execute(
            "INSERT INTO messages (sender, body, external_id) VALUES (?, ?, ?)",
            (body["from"], body["text"], body["id"]),
        )
        await db.commit()
        return web.json_response({"message_id": cursor.lastrowid})

    app = web.Application()
    app.cleanup_ctx.append(setup)
    app.router.add_post("/channels/fake/webhook", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_event_loop("uvloop"))


# --- load ------------------------------------------------------------------------
async def load(port: int, messages: int, concurrency: int, senders: int) -> dict[str, float]:
    import aiohttp

    from channels.fake import sign

    url = f"http://127.0.0.1:{port}/channels/fake/webhook"
    latencies: list[float] = []
    counter = iter(range(messages))
    run_id = os.urandom(4).hex()

    async def worker(session: aiohttp.ClientSession) -> None:
        for n in counter:
            raw = json.dumps(
                {
                    "from": f"customer-{n % senders}",
                    "text": f"Hello, this is message {n} about my order #{n * 7}",
                    "id": f"{run_id}-{n}",
                }
            ).encode()
            headers = {**sign(SECRET, raw), "Content-Type": "application/json"}
            started = time.perf_counter()
            async with session.post(url, data=raw, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm-up: first contacts, JIT-ish caches, SQLite pages.
        warm = iter(range(min(200, messages)))
        global_counter = counter

        async def warm_worker() -> None:
            for n in warm:
                raw = json.dumps({"from": f"warm-{n}", "text": "warm up", "id": f"{run_id}-warm-{n}"}).encode()
                async with session.post(
                    url, data=raw, headers={**sign(SECRET, raw), "Content-Type": "application/json"}
                ) as r:
                    await r.read()

        await asyncio.gather(*(warm_worker() for _ in range(concurrency)))
        counter = global_counter
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "messages_per_s": round(messages / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def measure(kind: str, messages: int, concurrency: int, senders: int, server_cpu: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(port), "--workdir", workdir],
            cwd=ROOT,
            preexec_fn=None if server_cpu is None else (lambda: os.sched_setaffinity(0, {server_cpu})),
        )
        try:
            wait_ready(port, proc)
            return asyncio.run(load(port, messages, concurrency, senders))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def median_round(results: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median throughput (its latencies come with it)."""
    ordered = sorted(results, key=lambda r: r["messages_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages (well under 60 s)")
    parser.add_argument("--messages", type=int)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--senders", type=int, default=500, help="distinct customers sending")
    parser.add_argument("--rounds", type=int, help="rounds per server (default 5; 3 with --quick)")
    parser.add_argument("--no-pin", action="store_true", help="let the OS place the server and the load on any core")
    parser.add_argument("--serve", choices=["hub", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "hub":
        return serve_hub(args.port, args.workdir)
    if args.serve == "bare":
        return serve_bare(args.port, args.workdir)

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = None
    if not args.no_pin and len(cpus) >= 2:
        # One core for the server under test, another for the load generator.
        server_cpu = cpus[0]
        os.sched_setaffinity(0, {cpus[1]})
    messages = args.messages or (5000 if args.quick else 20000)
    rounds = args.rounds or (3 if args.quick else 5)
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "hub": []}
    for round_no in range(1, rounds + 1):
        for kind, label in (("bare", "bare aiohttp + 1 SQLite insert"), ("hub", "hub ingest path (fake channel)")):
            result = measure(kind, messages, args.concurrency, args.senders, server_cpu)
            runs[kind].append(result)
            print(
                f"round {round_no} {label:31} {result['messages_per_s']:>8} msg/s"
                f"  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms",
                flush=True,
            )
    bare, hub = median_round(runs["bare"]), median_round(runs["hub"])
    ratio = round(hub["messages_per_s"] / bare["messages_per_s"], 3)
    print(
        f"median of {rounds}: bare {bare['messages_per_s']} msg/s, hub {hub['messages_per_s']} msg/s,"
        f" ratio hub/bare {ratio}  (targets: hub >= 1000 msg/s, ratio >= 0.5)"
    )
    emit(
        {
            "benchmark": "ingest",
            "messages": messages,
            "rounds": rounds,
            "pinned": server_cpu is not None,
            "concurrency": args.concurrency,
            "hub_messages_per_s": hub["messages_per_s"],
            "hub_p50_ms": hub["p50_ms"],
            "hub_p99_ms": hub["p99_ms"],
            "bare_messages_per_s": bare["messages_per_s"],
            "bare_p50_ms": bare["p50_ms"],
            "bare_p99_ms": bare["p99_ms"],
            "ratio": ratio,
            "hub_rounds_messages_per_s": [r["messages_per_s"] for r in runs["hub"]],
            "bare_rounds_messages_per_s": [r["messages_per_s"] for r in runs["bare"]],
        }
    )


if __name__ == "__main__":
    main()
