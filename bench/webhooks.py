"""Outgoing webhooks: what the tx hook costs the ingest path, and how fast
deliveries reach a receiver.

    .venv/bin/python bench/webhooks.py [--quick]

One process: the hub app (SQLite in a temporary directory, the fake
channel, no bot) and a receiver on 127.0.0.1:0 that checks every signature
and answers 200. Messages are ingested through ``HubService.ingest`` by 32
concurrent senders:

1. without the webhooks' hooks, with them but no endpoint (rounds
   interleaved), and with one endpoint taking ``message.created`` (its
   sender stopped, so only the in-transaction enqueue is measured): ingest
   rates and ratios;
2. with the sender running: deliveries per second until all are delivered,
   and from each message's commit to the receiver reading it, p50/p99.

Prints figures and one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, percentile
from aiohttp import web

ROUNDS = 3


async def ingest_many(service: Any, count: int, prefix: str, stamps: dict[str, float] | None = None) -> float:
    from hub.messages import InboundMessage

    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def sender() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            text = f"{prefix}-{n}"
            await service.ingest(
                InboundMessage(channel="fake", sender=f"{prefix}-{n % 200}", text=text, external_id=text)
            )
            if stamps is not None:
                stamps[text] = time.perf_counter()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(32)))
    return count / (time.perf_counter() - started)


async def main(quick: bool) -> dict[str, Any]:
    import json

    import sqlalchemy as sa

    from hub import keys
    from hub.app import create_app
    from hub.config import Settings
    from hub.events import utcnow
    from hub.storage.migrate import upgrade
    from hub.storage.schema import webhook_deliveries
    from hub.webhooks import store, verify_signature

    count = 500 if quick else 3000
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
    upgrade(url)

    arrived: dict[str, float] = {}
    bad = 0
    secret = "whsec_bench-secret-0123456789"

    async def receive(request: web.Request) -> web.Response:
        nonlocal bad
        body = await request.read()
        if not verify_signature(secret, request.headers.get("X-Servicehub-Signature"), body):
            bad += 1
        arrived[json.loads(body)["data"]["message"]["body"]] = time.perf_counter()
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    settings = Settings(
        database_url=url,
        data_dir=workdir / "data",
        channels="fake",
        fake_secret="bench",
        kb_enabled=False,
        bot="none",
        webhook_allow_private=True,
        webhook_concurrency=16,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    hub_runner = web.AppRunner(app, access_log=None)
    await hub_runner.setup()
    service = app[keys.SERVICE]
    db = app[keys.DATABASE]
    sender = app[keys.WEBHOOKS].sender
    figures: dict[str, Any] = {"messages": count}
    try:
        unhooked, without, with_hook = [], [], []
        webhooks = app[keys.WEBHOOKS]
        endpoint, _ = await db.write(
            lambda conn: store.create_endpoint(
                conn,
                {"url": f"http://127.0.0.1:{port}/hook", "events": ["message.created"], "secret": secret},
                allow_private=True,
                now=utcnow(),
            )
        )
        await sender.stop()

        async def subscribed(active: bool) -> None:
            await db.write(
                lambda conn: store.update_endpoint(
                    conn, endpoint.id, {"active": active}, allow_private=True, now=utcnow()
                )
            )

        # Interleaved rounds: the machine's load moves the three alike.
        for round_ in range(ROUNDS):
            await subscribed(False)
            webhooks.stop()
            unhooked.append(await ingest_many(service, count, f"off{round_}"))
            webhooks.start()
            without.append(await ingest_many(service, count, f"none{round_}"))
            await subscribed(True)
            with_hook.append(await ingest_many(service, count, f"hook{round_}"))
        await db.write(lambda conn: conn.execute(sa.delete(webhook_deliveries)))
        figures["ingest_msg_per_s_no_hook"] = round(sorted(unhooked)[ROUNDS // 2])
        figures["ingest_msg_per_s_no_endpoint"] = round(sorted(without)[ROUNDS // 2])
        figures["ingest_ratio_no_endpoint_vs_no_hook"] = round(
            figures["ingest_msg_per_s_no_endpoint"] / figures["ingest_msg_per_s_no_hook"], 3
        )
        figures["ingest_msg_per_s_one_endpoint"] = round(sorted(with_hook)[ROUNDS // 2])
        figures["ingest_ratio_with_hook"] = round(
            figures["ingest_msg_per_s_one_endpoint"] / figures["ingest_msg_per_s_no_endpoint"], 3
        )

        sender.start()
        committed: dict[str, float] = {}
        started = time.perf_counter()
        await ingest_many(service, count, "live", committed)
        while len([k for k in arrived if k.startswith("live-")]) < count:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        latencies = [(arrived[key] - committed[key]) * 1000 for key in committed]
        figures["deliveries_per_s"] = round(count / elapsed)
        figures["commit_to_receiver_ms_p50"] = round(percentile(latencies, 50), 1)
        figures["commit_to_receiver_ms_p99"] = round(percentile(latencies, 99), 1)
        figures["bad_signatures"] = bad
    finally:
        await hub_runner.cleanup()
        await runner.cleanup()
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 messages a round instead of 3,000")
    args = parser.parse_args()
    result = asyncio.run(main(args.quick))
    for key, value in result.items():
        print(f"{key}: {value}")
    emit(result)
