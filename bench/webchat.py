"""Web chat under load: concurrent visitors, messages/s, round trips, memory per connection.

    .venv/bin/python bench/webchat.py [--quick]

The hub (SQLite in a temporary directory, the echo bot, the webchat channel)
runs in a child process pinned to CPU 0; this process is the load generator,
pinned to CPU 1. Each visitor is a real WebSocket client speaking the widget's
protocol (hello, message, waiting for the echo reply). Phases:

1. ``steady``: N visitors (1,000; 200 with ``--quick``) each send one message
   every 5 s (random phase) for a while: round trip = send -> the bot's echo
   received over the socket (ingest, bus, bot reply, outbox, push); ack =
   send -> ack (the channel and the hub's ingest). Lighter levels first
   (250 and 500 visitors) show where the hub saturates.
2. ``held``: more idle visitors connect until M are open (5,000; 1,000 with
   ``--quick``): hub RSS per connection, then the steady load again while
   they are all held.
3. ``throughput``: the active visitors in a closed loop (next message as soon
   as the echo arrives): messages/s the hub sustains, and the round trips then.

Prints the figures, and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import ROOT, percentile

WS_PATH = "/channels/webchat/ws"
SEND_EVERY = 5.0


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def pin_to(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > cpu:  # type: ignore[operator]
        os.sched_setaffinity(0, {cpu})


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# --- the hub, in the child process -------------------------------------------
def serve(database_url: str, port_file: Path, switch_interval: float | None) -> None:
    pin_to(0)
    if switch_interval:
        # An experiment, not what `hub serve` does: a shorter GIL switch
        # interval shortens the convoy between the event loop and the SQLite
        # writer thread (each statement re-acquires the GIL).
        sys.setswitchinterval(switch_interval)
    raise_fd_limit()
    from aiohttp import web

    from hub import keys
    from hub.__main__ import new_event_loop
    from hub.app import create_app
    from hub.config import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=port_file.parent / "data",
        channels="webchat",
        log_level="WARNING",
        bot="echo",  # hub/bot/setup.py installs bot.echo's EchoBot
        kb_enabled=False,
        webchat_secrets="bench-secret",
        # One load generator is one IP with thousands of visitors.
        webchat_ip_rate=1_000_000.0,
        webchat_ip_burst=1_000_000,
        webchat_max_sockets_per_ip=1_000_000,  # the default 50 refused the 51st visitor with a 429
        webchat_session_rate=50.0,
        webchat_session_burst=50,
        webchat_hello_timeout=120.0,
    )

    async def main() -> None:
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        port_file.write_text(str(port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await app[keys.CHANNELS]["webchat"].on_shutdown(app)
        await runner.cleanup()

    # On the event loop ``hub serve`` uses (HUB_EVENT_LOOP, uvloop by default).
    with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.event_loop)) as loop_runner:
        loop_runner.run(main())


# --- visitors, in this process -------------------------------------------------
@dataclass
class Stats:
    rtts: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    sent: int = 0
    received: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Visitor:
    def __init__(self, number: int, stats: Stats) -> None:
        self.number = number
        self.stats = stats
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.outstanding: dict[str, float] = {}
        self.unacked: dict[str, float] = {}
        self.replied = asyncio.Event()
        self.sequence = itertools.count()
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, session: aiohttp.ClientSession, url: str) -> None:
        self.ws = await session.ws_connect(url, autoping=True, max_msg_size=1 << 20)
        await self.ws.send_str('{"type":"hello"}')
        while True:
            frame = json.loads((await self.ws.receive(timeout=60)).data)
            if frame["type"] == "history":
                break
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            kind = frame["type"]
            if kind == "message" and frame["message"]["author"] == "bot":
                key = frame["message"]["text"][len("Echo: ") :]
                started = self.outstanding.pop(key, None)
                if started is not None:
                    self.stats.rtts.append(time.perf_counter() - started)
                    self.stats.received += 1
                    self.replied.set()
            elif kind == "ack":
                started = self.unacked.pop(frame["client_id"], None)
                if started is not None:
                    self.stats.acks.append(time.perf_counter() - started)
            elif kind == "error":
                self.stats.error(frame.get("code", "?"))

    async def send(self) -> None:
        assert self.ws is not None
        n = next(self.sequence)
        text = f"v{self.number} m{n}"
        self.replied.clear()
        self.outstanding[text] = self.unacked[f"c{n}"] = time.perf_counter()
        self.stats.sent += 1
        await self.ws.send_str(json.dumps({"type": "message", "client_id": f"c{n}", "text": text}))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


async def connect_all(visitors: list[Visitor], session: aiohttp.ClientSession, url: str, parallel: int = 100) -> float:
    started = time.perf_counter()
    gate = asyncio.Semaphore(parallel)

    async def one(visitor: Visitor) -> None:
        async with gate:
            await visitor.connect(session, url)

    await asyncio.gather(*(one(v) for v in visitors))
    return time.perf_counter() - started


async def steady(visitors: list[Visitor], seconds: float) -> dict[str, Any]:
    """Each visitor sends one message every SEND_EVERY seconds, at a random phase."""
    stats = Stats()
    for visitor in visitors:
        visitor.stats = stats
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def run(visitor: Visitor) -> None:
        await asyncio.sleep(random.uniform(0, SEND_EVERY))
        while loop.time() < end:
            await visitor.send()
            await asyncio.sleep(SEND_EVERY)

    await asyncio.gather(*(run(v) for v in visitors))
    await drain(visitors, stats)
    return summarise(stats, seconds)


async def closed_loop(visitors: list[Visitor], seconds: float) -> dict[str, Any]:
    """Each visitor sends its next message as soon as the echo of the last arrives."""
    stats = Stats()
    for visitor in visitors:
        visitor.stats = stats
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def run(visitor: Visitor) -> None:
        while loop.time() < end:
            await visitor.send()
            try:
                await asyncio.wait_for(visitor.replied.wait(), 30)
            except TimeoutError:
                stats.error("timeout")

    started = time.perf_counter()
    await asyncio.gather(*(run(v) for v in visitors))
    elapsed = time.perf_counter() - started
    await drain(visitors, stats)
    return summarise(stats, elapsed)


async def drain(visitors: list[Visitor], stats: Stats, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while any(v.outstanding for v in visitors) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    lost = sum(len(v.outstanding) for v in visitors)
    if lost:
        stats.error("no_reply")
        stats.errors["no_reply"] = lost
    for visitor in visitors:
        visitor.outstanding.clear()
        visitor.unacked.clear()


def summarise(stats: Stats, elapsed: float) -> dict[str, Any]:
    rtts_ms = [r * 1000 for r in stats.rtts]
    acks_ms = [r * 1000 for r in stats.acks]
    return {
        "sent": stats.sent,
        "replies": stats.received,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(stats.received / elapsed, 1) if elapsed else 0.0,
        "rtt_p50_ms": round(percentile(rtts_ms, 50), 2),
        "rtt_p99_ms": round(percentile(rtts_ms, 99), 2),
        "rtt_max_ms": round(max(rtts_ms), 2) if rtts_ms else None,
        "rtt_mean_ms": round(statistics.fmean(rtts_ms), 2) if rtts_ms else None,
        # send -> ack: the channel and the hub's ingest only (no bot, no outbox).
        "ack_p50_ms": round(percentile(acks_ms, 50), 2),
        "ack_p99_ms": round(percentile(acks_ms, 99), 2),
        "errors": stats.errors,
    }


def show(name: str, figures: dict[str, Any]) -> None:
    print(
        f"  {name:<28} {figures['replies']:>7} replies in {figures['seconds']:>6.1f} s = "
        f"{figures['messages_per_s']:>7.1f} msg/s   rtt p50 {figures['rtt_p50_ms']:>7.2f} ms  "
        f"p99 {figures['rtt_p99_ms']:>7.2f} ms  max {figures['rtt_max_ms']} ms  (ack p50 {figures['ack_p50_ms']:.2f} "
        f"p99 {figures['ack_p99_ms']:.2f} ms)  errors {figures['errors'] or 'none'}",
        flush=True,
    )


async def load(port: int, hub_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}{WS_PATH}"
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    figures: dict[str, Any] = {
        "visitors": args.visitors,
        "held": args.held,
        "send_every_s": SEND_EVERY,
        "hub_switch_interval_s": args.switch_interval or sys.getswitchinterval(),
    }
    async with aiohttp.ClientSession(connector=connector) as session:
        rss_empty = rss_bytes(hub_pid)
        active = [Visitor(n, stats) for n in range(args.visitors)]
        took = await connect_all(active, session, url)
        figures["connect_s"] = round(took, 2)
        print(f"  {args.visitors} visitors connected in {took:.2f} s ({args.visitors / took:.0f}/s)", flush=True)

        for level in args.levels:
            if level < args.visitors:
                name = f"steady_{level}"
                figures[name] = await steady(active[:level], args.seconds)
                show(f"steady, {level} visitors", figures[name])
        figures["steady"] = await steady(active, args.seconds)
        show(f"steady, {args.visitors} visitors", figures["steady"])

        rss_before = rss_bytes(hub_pid)
        idle = [Visitor(n, stats) for n in range(args.visitors, args.held)]
        took = await connect_all(idle, session, url)
        await asyncio.sleep(1.0)
        rss_after = rss_bytes(hub_pid)
        per_connection = (rss_after - rss_before) / max(1, len(idle))
        figures.update(
            held_connect_s=round(took, 2),
            hub_rss_empty_mb=round(rss_empty / 2**20, 1),
            hub_rss_held_mb=round(rss_after / 2**20, 1),
            hub_rss_per_connection_kb=round(per_connection / 1024, 1),
        )
        print(
            f"  {args.held} connections held (+{len(idle)} in {took:.2f} s); hub RSS {rss_empty / 2**20:.0f} MB empty, "
            f"{rss_after / 2**20:.0f} MB now: {per_connection / 1024:.1f} KB per connection",
            flush=True,
        )
        figures["steady_while_held"] = await steady(active, args.seconds)
        show(f"steady, {args.held} held", figures["steady_while_held"])
        # Last: it saturates the hub, and what it leaves behind would colour the others.
        figures["throughput"] = await closed_loop(active, args.burst_seconds)
        show(f"closed loop, {args.visitors} visitors", figures["throughput"])
        everyone = active + idle
        figures["open_at_end"] = sum(1 for v in everyone if v.ws is not None and not v.ws.closed)
        await asyncio.gather(*(v.close() for v in everyone))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer visitors and shorter phases (< 60 s)")
    parser.add_argument("--visitors", type=int, help="active visitors (default 1000; 200 quick)")
    parser.add_argument("--held", type=int, help="connections held in the last phase (default 5000; 1000 quick)")
    parser.add_argument("--seconds", type=float, help="length of each steady phase (default 30; 12 quick)")
    parser.add_argument("--burst-seconds", type=float, help="length of the closed loop (default 10; 5 quick)")
    parser.add_argument(
        "--levels",
        help="extra, lighter steady loads first, comma-separated visitor counts (default 250,500; none quick)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="sys.setswitchinterval for the hub process (an experiment; default: Python's 0.005)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.database_url, args.port_file, args.switch_interval)
        return
    args.visitors = args.visitors or (200 if args.quick else 1000)
    args.held = max(args.held or (1000 if args.quick else 5000), args.visitors)
    args.seconds = args.seconds or (12.0 if args.quick else 30.0)
    levels = args.levels if args.levels is not None else ("" if args.quick else "250,500")
    args.levels = [int(n) for n in levels.split(",") if n.strip()]
    args.burst_seconds = args.burst_seconds or (5.0 if args.quick else 10.0)

    fd_limit = raise_fd_limit()
    from hub.storage.migrate import upgrade

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-webchat-") as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'hub.db'}"
        upgrade(database_url)
        port_file = Path(tmp) / "port"
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--database-url", database_url, "--port-file", str(port_file)]
            + (["--switch-interval", str(args.switch_interval)] if args.switch_interval else []),
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the hub did not start")
                time.sleep(0.05)
            port = int(port_file.read_text())
            pin_to(1)
            print(
                f"webchat bench: hub pid {child.pid} on 127.0.0.1:{port} (CPU 0), load generator CPU 1, "
                f"fd limit {fd_limit}, SQLite, echo bot",
                flush=True,
            )
            figures = asyncio.run(load(port, child.pid, args))
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    figures["quick"] = args.quick
    figures["total_s"] = round(time.perf_counter() - began, 1)
    figures["target_p99_under_100ms_at_1000"] = None if args.visitors < 1000 else figures["steady"]["rtt_p99_ms"] < 100
    figures["target_5000_held"] = None if args.held < 5000 else figures["open_at_end"] >= 5000
    print(f"done in {figures['total_s']} s", flush=True)
    print(json.dumps(figures, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
