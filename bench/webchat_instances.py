"""Web chat across hub instances: an agent's reply on instance A to a visitor whose socket is on B.

    .venv/bin/python bench/webchat_instances.py [--quick] [--database-url URL] [--redis-url URL]

Two hubs run as child processes (``hub serve``'s event loop) on one new
PostgreSQL database and one Redis (their own pub/sub prefix), as behind a
load balancer. Visitors speak the widget's protocol to B; each opens a
conversation. Then, one at a time, an agent posts a reply through A's API
(``POST /api/v1/conversations/{id}/messages``, an agent token): A commits it
with its outbox row, A's outbox worker sends it (B's worker only polls
hourly, so it never claims one) and the relay (``hub/relay.py``) carries
it to B, which pushes it to the socket. Latency = POST sent -> the
``message`` frame read on the visitor's socket.

The same replies to visitors connected to A give the one-instance figure
(same processes, same outbox path, no relay hop), for comparison.

Prints the figures, and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from _common import ROOT, emit, percentile, postgres_database

WS_PATH = "/channels/webchat/ws"
AGENT_EMAIL = "bench-agent@example.test"


# --- one hub, in a child process ---------------------------------------------
def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from hub import keys
    from hub.__main__ import new_event_loop
    from hub.app import create_app
    from hub.config import Settings

    port_file = Path(args.port_file)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=args.database_url,
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
        data_dir=port_file.parent / "data",
        channels="webchat",
        log_level="WARNING",
        bot="none",
        kb_enabled=False,
        webchat_secrets="bench-secret",
        webchat_agents_online="true",
        outbox_poll_interval=args.poll_interval,
    )

    async def main() -> None:
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_file.write_text(str(runner.addresses[0][1]))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await app[keys.CHANNELS]["webchat"].on_shutdown(app)
        await runner.cleanup()

    with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.event_loop)) as loop_runner:
        loop_runner.run(main())


def start_child(name: str, workdir: Path, database_url: str, redis_url: str, prefix: str, poll: float) -> Any:
    port_file = workdir / name / "port"
    port_file.parent.mkdir(parents=True)
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--redis-prefix",
            prefix,
            "--port-file",
            str(port_file),
            "--poll-interval",
            str(poll),
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            raise SystemExit(f"hub {name} did not start")
        time.sleep(0.05)
    return child, int(port_file.read_text())


# --- the visitors and the agent, in this process -----------------------------------
async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=30)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket ended: {msg}")
        frame = json.loads(msg.data)
        if frame["type"] == kind:
            return dict(frame)


async def open_visitor(session: aiohttp.ClientSession, port: int) -> tuple[aiohttp.ClientWebSocketResponse, int]:
    """A visitor on the hub at ``port`` with a conversation: its socket and conversation id."""
    ws = await session.ws_connect(f"http://127.0.0.1:{port}{WS_PATH}", headers={"Origin": f"http://127.0.0.1:{port}"})
    await ws.send_json({"type": "hello"})
    await receive(ws, "history")
    await ws.send_json({"type": "message", "client_id": uuid.uuid4().hex, "text": "Hello, is anyone there?"})
    await receive(ws, "ack")
    await ws.send_json({"type": "history", "limit": 1})
    return ws, int((await receive(ws, "history"))["conversation_id"])


async def replies(
    session: aiohttp.ClientSession, api_port: int, token: str, visitors: list[Any], rounds: int
) -> tuple[list[float], list[float]]:
    """``rounds`` agent replies through the API at ``api_port``, one at a
    time: latencies (ms) to the socket, and of the POST alone."""
    latencies, posts = [], []
    for number in range(rounds):
        ws, conversation_id = visitors[number % len(visitors)]
        text = f"Reply {number} {uuid.uuid4().hex[:8]}"
        began = time.perf_counter()
        async with session.post(
            f"http://127.0.0.1:{api_port}/api/v1/conversations/{conversation_id}/messages",
            json={"text": text},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            if response.status != 201:
                raise RuntimeError(f"reply refused: {response.status} {await response.text()}")
        posts.append((time.perf_counter() - began) * 1000)
        while True:
            frame = await receive(ws, "message")
            if frame["message"]["text"] == text:
                break
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, posts


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


async def agent_token(database_url: str) -> str:
    from hub import auth
    from hub.storage import open_database

    db = open_database(database_url)
    try:
        user = await db.write(lambda conn: auth.create_user(conn, name="Bench Agent", email=AGENT_EMAIL, role="agent"))
        return str((await db.write(auth.create_token, user.id, "bench"))[0])
    finally:
        await db.close()


async def measure(a_port: int, b_port: int, token: str, visitors: int, rounds: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        on_b = [await open_visitor(session, b_port) for _ in range(visitors)]
        on_a = [await open_visitor(session, a_port) for _ in range(visitors)]
        await replies(session, a_port, token, on_b, 5)  # warm-up: connections, statements
        await replies(session, a_port, token, on_a, 5)
        # Interleaved, so both see the same machine load.
        cross: list[float] = []
        local: list[float] = []
        posts: list[float] = []
        for _ in range(rounds // 10):
            latencies, timed = await replies(session, a_port, token, on_b, 10)
            cross += latencies
            posts += timed
            latencies, timed = await replies(session, a_port, token, on_a, 10)
            local += latencies
            posts += timed
        for ws, _ in on_a + on_b:
            await ws.close()
    # The POST's own share (commit, audit, hooks): the rest is the outbox and the push.
    return {"cross_instance": summary(cross), "same_instance": summary(local), "api_post": summary(posts)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from hub.storage.migrate import upgrade

    database_url, drop = await postgres_database(args.database_url)
    try:
        await asyncio.to_thread(upgrade, database_url)
        token = await agent_token(database_url)
        prefix = f"servicehub-bench-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory(prefix="bench-webchat-instances-") as tmp:
            a, a_port = start_child("a", Path(tmp), database_url, args.redis_url, prefix, 1.0)
            try:
                b, b_port = start_child("b", Path(tmp), database_url, args.redis_url, prefix, 3600.0)
                try:
                    print(f"hub A pid {a.pid} :{a_port}, hub B pid {b.pid} :{b_port}, PostgreSQL + Redis", flush=True)
                    return await measure(a_port, b_port, token, args.visitors, args.rounds)
                finally:
                    b.send_signal(signal.SIGTERM)
                    b.wait(timeout=30)
            finally:
                a.send_signal(signal.SIGTERM)
                a.wait(timeout=30)
    finally:
        await drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer replies (40 per path)")
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--visitors", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="replies per path (a multiple of 10)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-prefix", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    parser.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    args.visitors = args.visitors or (3 if args.quick else 20)
    args.rounds = max(10, args.rounds or (40 if args.quick else 500))
    began = time.perf_counter()
    figures = asyncio.run(run(args))
    figures["quick"] = args.quick
    figures["total_s"] = round(time.perf_counter() - began, 1)
    for path in ("cross_instance", "same_instance", "api_post"):
        f = figures[path]
        print(f"{path}: p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms (n={f['n']})", flush=True)
    emit(figures)


if __name__ == "__main__":
    main()
