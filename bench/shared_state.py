"""What several instances' shared state costs each instance (hub/versions.py, hub/leases.py).

    .venv/bin/python bench/shared_state.py [--quick] [--postgres URL]

- ``version_check_ms``: one look at a cache's version (the primary-key read
  an instance makes at most once a second per cache before using it);
- ``bump_ms``: one bump (an upsert; a routing rule's in its own transaction);
- ``lease_renew_ms``: one take-or-renew of a lease (each SLA scheduler pass on
  every instance; every third of the lease per IMAP folder).

Median and p99 over sequential calls through ``Database.read``/``write`` on a
fresh SQLite file, and with ``--postgres URL`` (a server's maintenance
database, e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``) on a
temporary database there. Prints figures and one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import emit, percentile, postgres_database


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> dict[str, float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50": round(percentile(samples, 50), 3), "p99": round(percentile(samples, 99), 3)}


async def measure(url: str, count: int) -> dict[str, Any]:
    from hub.events import utcnow
    from hub.leases import acquire
    from hub.storage import open_database
    from hub.storage.migrate import upgrade
    from hub.versions import bump, current

    await asyncio.to_thread(upgrade, url)
    db = open_database(url)
    try:
        await db.write(bump, "bench")
        return {
            "version_check_ms": await timed(lambda: db.read(current, "bench"), count),
            "bump_ms": await timed(lambda: db.write(bump, "bench"), count),
            "lease_renew_ms": await timed(lambda: db.write(acquire, "bench", "me", now=utcnow(), seconds=30.0), count),
        }
    finally:
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--postgres", help="a PostgreSQL server's maintenance database URL")
    args = parser.parse_args()
    count = 50 if args.quick else 1000
    figures: dict[str, Any] = {"calls": count}
    with tempfile.TemporaryDirectory() as tmp:
        figures["sqlite"] = await measure(f"sqlite+aiosqlite:///{Path(tmp) / 'hub.db'}", count)
    print("sqlite", figures["sqlite"])
    if args.postgres:
        url, drop = await postgres_database(args.postgres)
        try:
            figures["postgresql"] = await measure(url, count)
        finally:
            await drop
        print("postgresql", figures["postgresql"])
    emit(figures)


if __name__ == "__main__":
    asyncio.run(main())
