"""Scaling out: the same inbound load against one hub instance, then two.

    .venv/bin/python bench/scale.py [--quick] [--messages N] [--concurrency C]
                                    [--database-url URL] [--redis-url URL]

Each round starts its instances as ``hub serve`` child processes on a new
PostgreSQL database of its own and one Redis (a pub/sub prefix of its own),
as a deployment behind a balancer would run them: the fake channel, the
echo bot (so every message also goes through a bot job, the bot's answer,
its outbox row and its send), no knowledge base. Customers (``C`` at once,
each writing its messages one after the other) post signed fake-channel
webhooks to the instances in turn, round-robin, as the balancer would.

Measured per round: webhooks taken per second and their latency (the
instance's 200, retries none: nothing breaks here), then the end-to-end
rate (the first webhook sent to the last answer delivered, read in the
database), and the CPU seconds each process used (the hubs, PostgreSQL's
backends, Redis, this load generator): where the time went. ``speedup`` is
the two-instance webhook rate over the one-instance rate.

A third round (``--control``, on unless ``--quick``) paces one instance at
half the two instances' rate, the share each of them got: its CPU per
message against the two instances' is what being two costs
(``cluster_overhead``), apart from what a lighter load per instance costs;
from it, the speedup on a machine with a core per instance
(``speedup_with_a_core_per_instance_at_full_load``).

Prints the figures, and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from _common import ROOT, emit, free_port, percentile, postgres_database

SECRET = "bench-scale-secret"
MESSAGES_PER_CUSTOMER = 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes and their CPU ---------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds used between ``start`` and ``stop`` by the given processes
    and, by name, by every PostgreSQL and Redis process on this machine (a
    shared machine's other users count too: the figures say so)."""

    def __init__(self, hubs: list[subprocess.Popen[bytes]]) -> None:
        self.groups: dict[str, Callable[[], list[int]]] = {
            "hubs": lambda: [hub.pid for hub in hubs],
            "postgres": lambda: pids_named("postgres"),
            "redis": lambda: pids_named("redis-server"),
        }
        self.before: dict[str, dict[int, float]] = {}
        self.load_before = 0.0
        self.wall_before = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        return {group: {pid: cpu_seconds(pid) for pid in pids()} for group, pids in self.groups.items()}

    def start(self) -> None:
        self.before = self._read()
        times = os.times()
        self.load_before = times.user + times.system
        self.wall_before = time.monotonic()

    def stop(self) -> dict[str, float]:
        after = self._read()
        used = {
            group: round(sum(cpu - self.before[group].get(pid, 0.0) for pid, cpu in after[group].items()), 1)
            for group in after
        }
        times = os.times()
        used["load_generator"] = round(times.user + times.system - self.load_before, 1)
        used["wall"] = round(time.monotonic() - self.wall_before, 1)
        return used


def start_hub(name: str, workdir: Path, database_url: str, redis_url: str, prefix: str) -> tuple[Any, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        PYTHONPATH=str(ROOT),
        HUB_HOST="127.0.0.1",
        HUB_PORT=str(port),
        HUB_DATABASE_URL=database_url,
        HUB_REDIS_URL=redis_url,
        HUB_REDIS_PREFIX=prefix,
        HUB_DATA_DIR=str(workdir / name),
        HUB_CHANNELS="fake",
        HUB_FAKE_SECRET=SECRET,
        HUB_BOT="echo",
        HUB_KB_ENABLED="false",
        HUB_CSAT_ENABLED="false",
        HUB_LOG_LEVEL="WARNING",
        HUB_OUTBOX_POLL_INTERVAL="0.2",
    )
    log = (workdir / f"{name}.log").open("ab")
    child = subprocess.Popen([sys.executable, "-m", "hub", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log)
    log.close()
    return child, port


async def wait_ready(http: aiohttp.ClientSession, child: Any, port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"a hub exited with {child.returncode} before it was ready")
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("a hub was not ready within 90 s")


# --- the load --------------------------------------------------------------------------
async def post(http: aiohttp.ClientSession, url: str, item: dict[str, str]) -> float:
    from channels.fake import sign

    raw = json.dumps(item).encode()
    headers = {**sign(SECRET, raw), "Content-Type": "application/json"}
    began = time.perf_counter()
    async with http.post(url + "/channels/fake/webhook", data=raw, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}")
    return time.perf_counter() - began


async def write(
    http: aiohttp.ClientSession,
    urls: list[str],
    messages: int,
    concurrency: int,
    tag: str,
    rate: float | None = None,
) -> tuple[float, list[float]]:
    """``messages`` webhooks from ``messages / MESSAGES_PER_CUSTOMER`` customers,
    ``concurrency`` writing at once, round-robin over ``urls``; with ``rate``,
    no faster than that many a second in all. (seconds, latencies)."""
    customers = asyncio.Queue[int]()
    for index in range(-(-messages // MESSAGES_PER_CUSTOMER)):
        customers.put_nowait(index)
    latencies: list[float] = []
    turn = 0
    loop = asyncio.get_running_loop()
    next_at = loop.time()

    async def paced() -> None:
        nonlocal next_at
        if rate is None:
            return
        now = loop.time()
        slot, next_at = max(now, next_at), max(now, next_at) + 1 / rate
        if slot > now:
            await asyncio.sleep(slot - now)

    async def customer() -> None:
        nonlocal turn
        while not customers.empty():
            index = customers.get_nowait()
            for k in range(min(MESSAGES_PER_CUSTOMER, messages - index * MESSAGES_PER_CUSTOMER)):
                url = urls[turn % len(urls)]
                turn += 1
                item = {"from": f"{tag}-{index}", "text": f"parcel {index} #{k}", "id": f"{tag}-{index}-{k}"}
                await paced()
                latencies.append(await post(http, url, item))

    began = time.perf_counter()
    await asyncio.gather(*(customer() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


async def delivered(database_url: str) -> Callable[[], Awaitable[int]]:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'delivered'"))
        finally:
            await conn.close()

    return count


async def transactions(database_url: str) -> int:
    """Transactions committed in the round's database so far (``pg_stat_database``,
    as of the statistics collector's last report: read after a pause)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", url.database))
    finally:
        await conn.close()


async def round_of(instances: int, args: argparse.Namespace, *, rate: float | None = None) -> dict[str, Any]:
    from hub.storage.migrate import upgrade

    concurrency = args.concurrency
    database_url, drop = await postgres_database(args.database_url)
    children: list[Any] = []
    try:
        await asyncio.to_thread(upgrade, database_url)
        prefix = f"servicehub-bench-scale-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            ports = []
            for n in range(instances):
                child, port = start_hub(f"hub-{n}", Path(tmp), database_url, args.redis_url, prefix)
                children.append(child)
                ports.append(port)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
                for child, port in zip(children, ports, strict=True):
                    await wait_ready(http, child, port)
                urls = [f"http://127.0.0.1:{port}" for port in ports]
                answered = await delivered(database_url)
                # Warm up every instance (connections, caches), and let its answers go out.
                warm = 8 * instances * MESSAGES_PER_CUSTOMER
                await write(http, urls, warm, min(concurrency, 8 * instances), "warm")
                while await answered() < warm:
                    await asyncio.sleep(0.1)
                # What the instances cost doing nothing (workers polling, leases renewed) for a while.
                meter = CpuMeter(children)
                meter.start()
                await asyncio.sleep(args.idle_seconds)
                idle = meter.stop()
                await asyncio.sleep(1.0)  # the statistics are reported about once a second
                committed = await transactions(database_url)
                meter.start()
                began = time.perf_counter()
                seconds, latencies = await write(http, urls, args.messages, concurrency, "load", rate)
                while await answered() < warm + args.messages:
                    await asyncio.sleep(0.05)
                end_to_end = time.perf_counter() - began
                cpu = meter.stop()
                await asyncio.sleep(1.0)
                committed = await transactions(database_url) - committed
        return {
            "instances": instances,
            "messages": args.messages,
            "concurrency": concurrency,
            "paced_at": rate,
            "webhooks_per_s": round(args.messages / seconds, 1),
            "webhook_ms_p50": round(1000 * percentile(latencies, 50), 1),
            "webhook_ms_p99": round(1000 * percentile(latencies, 99), 1),
            "answered_per_s": round(args.messages / end_to_end, 1),
            # From the first webhook to the last answer delivered.
            "cpu_s": cpu,
            "cpu_ms_per_message": {
                group: round(1000 * cpu[group] / args.messages, 2)
                for group in ("hubs", "postgres", "redis", "load_generator")
            },
            # Including what the instances' workers committed polling meanwhile (a few a second).
            "transactions_per_message": round(committed / args.messages, 2),
            "idle_hub_cpu_ms_per_s": round(1000 * idle["hubs"] / idle["wall"], 1),
            # The hubs' CPU per message less what they would have spent idle meanwhile.
            "hub_cpu_ms_per_message_net": round(
                1000 * (cpu["hubs"] - cpu["wall"] * idle["hubs"] / idle["wall"]) / args.messages, 2
            ),
        }
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        await drop


def _control_figures(control: dict[str, Any], two_ms: float) -> dict[str, Any]:
    """What a second instance costs beyond the load each one sees.

    One instance paced at half the two instances' rate sees the rate each of
    them saw. Its CPU per message against theirs separates the cost of being
    two (every bus event decoded by both, both polling) from that of a
    lighter load on each (fewer rows per claim, fewer requests per loop
    turn): ``cluster_overhead`` is two / control. A machine with a core per
    instance runs each at full load, where a message costs the one-instance
    figure times that overhead; the speedup there is 2 / overhead, taken as
    at most 2 (an overhead under 1 says only that the paced round, evenly
    spaced, batches less than the two instances' bursts do).
    """
    control_ms = control["hub_cpu_ms_per_message_net"]
    overhead = two_ms / control_ms if control_ms else None
    return {
        "control": control,
        "cluster_overhead": round(overhead, 2) if overhead else None,
        "speedup_with_a_core_per_instance_at_full_load": round(2 / max(overhead, 1.0), 2) if overhead else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None, help="customers writing at once")
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--idle-seconds", type=float, default=None, help="the idle CPU measured this long")
    parser.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a third round: one instance paced at half the two instances' rate (each one's share); "
        "default on, off with --quick",
    )
    args = parser.parse_args()
    args.idle_seconds = args.idle_seconds or (1.5 if args.quick else 10.0)
    args.messages = args.messages or (300 if args.quick else 6000)
    args.concurrency = args.concurrency or (32 if args.quick else 64)
    began = time.perf_counter()
    rounds = [asyncio.run(round_of(n, args)) for n in (1, 2)]
    one, two = rounds
    control = None
    if args.control if args.control is not None else not args.quick:
        control = asyncio.run(round_of(1, args, rate=two["webhooks_per_s"] / 2))
        rounds.append(control)
    for r in rounds:
        print(
            f"{r['instances']} instance(s){' paced' if r['paced_at'] else ''}: {r['webhooks_per_s']} webhooks/s (p50 {r['webhook_ms_p50']} ms, "
            f"p99 {r['webhook_ms_p99']} ms), {r['answered_per_s']} answered/s; CPU s {r['cpu_s']}, "
            f"per message {r['cpu_ms_per_message']} ms; hubs idle {r['idle_hub_cpu_ms_per_s']} ms/s, "
            f"per message net of idle {r['hub_cpu_ms_per_message_net']} ms; "
            f"{r['transactions_per_message']} transactions per message",
            flush=True,
        )
    # A hub is one event loop: at most a core. With a core to spare for each
    # instance (and PostgreSQL's own), the rate is a core over the hub CPU a
    # message costs: two instances over one, from the CPU each message cost.
    hub_ms = one["hub_cpu_ms_per_message_net"], two["hub_cpu_ms_per_message_net"]
    busy = sum(v for k, v in one["cpu_s"].items() if k != "wall") / one["cpu_s"]["wall"]
    emit(
        {
            "one": one,
            "two": two,
            "speedup": round(two["webhooks_per_s"] / one["webhooks_per_s"], 2),
            "speedup_answered": round(two["answered_per_s"] / one["answered_per_s"], 2),
            "speedup_with_a_core_per_instance": round(2 * hub_ms[0] / hub_ms[1], 2) if hub_ms[1] else None,
            **(_control_figures(control, hub_ms[1]) if control is not None else {}),
            "cores_ours_used_with_one": round(busy, 2),
            "cpus": os.cpu_count(),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "quick": args.quick,
            "total_s": round(time.perf_counter() - began, 1),
        }
    )


if __name__ == "__main__":
    main()
