"""What a bearer token costs per request: ``GET /api/v1/me`` latency and throughput.

    .venv/bin/python bench/auth_latency.py [--requests N]

The hub runs in this process on SQLite in a temporary directory (no bot, no
knowledge base); one agent token authenticates every request. Phases, after a
warm-up: ``sequential`` (one request at a time: the latency of one lookup)
and ``concurrent`` (32 requests in flight: requests/s). Run it on two
checkouts to compare authenticators (the token cache was dropped so that a
revocation holds at once on every instance; each request now reads the
token's row by its indexed hash).

Prints the figures, and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, percentile


async def measure(requests: int) -> dict[str, Any]:
    from aiohttp.test_utils import TestClient, TestServer

    from hub import auth
    from hub.app import create_app
    from hub.config import Settings
    from hub.storage import open_database
    from hub.storage.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'hub.db'}"
        await asyncio.to_thread(upgrade, url)
        db = open_database(url)
        user = await db.write(lambda conn: auth.create_user(conn, name="Agent", email="a@example.test", role="agent"))
        token = (await db.write(auth.create_token, user.id, "bench"))[0]
        await db.close()
        settings = Settings(
            database_url=url,
            data_dir=Path(tmp) / "data",
            channels="fake",
            fake_secret="bench",
            kb_enabled=False,
            bot="none",
            _env_file=None,
        )
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
        await client.start_server()
        headers = {"Authorization": f"Bearer {token}"}

        async def one() -> float:
            started = time.perf_counter()
            response = await client.get("/api/v1/me", headers=headers)
            await response.read()
            assert response.status == 200, response.status
            return (time.perf_counter() - started) * 1000

        try:
            for _ in range(200):
                await one()
            sequential = [await one() for _ in range(requests)]
            in_flight = 32
            started = time.perf_counter()
            for _ in range(requests // in_flight):
                await asyncio.gather(*(one() for _ in range(in_flight)))
            elapsed = time.perf_counter() - started
        finally:
            await client.close()
    return {
        "requests": requests,
        "sequential_p50_ms": round(percentile(sequential, 50), 3),
        "sequential_p95_ms": round(percentile(sequential, 95), 3),
        "sequential_p99_ms": round(percentile(sequential, 99), 3),
        "sequential_mean_ms": round(statistics.fmean(sequential), 3),
        "concurrent_32_requests_per_s": round((requests // in_flight) * in_flight / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="500 requests (well under a minute)")
    args = parser.parse_args()
    figures = asyncio.run(measure(500 if args.quick else args.requests))
    for name, value in figures.items():
        print(f"{name:32} {value}")
    emit(figures)


if __name__ == "__main__":
    main()
