"""Assignment decisions per second with 10,000 open tickets and 200 agents.

    .venv/bin/python bench/routing.py [--quick]

1. ``decide``: the routing decision itself (``hub.tickets.routing.choose`` through
   ``Router``, which books the load): fill 10,000 tickets, then a steady state
   where one ticket is resolved and a new one assigned, over and over.
2. ``db``: the hub's real transaction (``hub.tickets.transactions.reroute``: read the
   on-duty agents and their loads, choose, update ticket + conversation +
   load counters, write the timeline event) on SQLite holding 10,000 open
   tickets and 200 agents, sequential and 32 at a time (group commit).
   With ``--postgres URL`` (a server's maintenance database, e.g.
   ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``): the same on a
   temporary database there, where the 32 run on their own connections and
   routing transactions queue on one lock (``agents.lock_routing``).

Prints figures and one JSON object on the last line. Target: >= 2,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from _common import emit, postgres_database

TEAMS = [f"team-{n}" for n in range(10)]
PRIORITIES = ["urgent"] * 5 + ["high"] * 20 + ["normal"] * 60 + ["low"] * 15


def agents(count: int, rng: random.Random) -> list:
    from hub.tickets.routing import AgentLoad

    return [
        AgentLoad(
            user_id=i + 1,
            team=TEAMS[i % len(TEAMS)],
            skills=frozenset(rng.sample(TEAMS, 2)),
            capacity=60,
            senior=i % 10 == 0,
            on_duty=i % 20 != 7,  # a few off duty
        )
        for i in range(count)
    ]


def bench_decide(tickets: int, steady: int, rng: random.Random) -> dict[str, float]:
    from hub.tickets.routing import Router

    router = Router(agents(200, rng))
    open_tickets: list[int | None] = []
    started = time.perf_counter()
    for _ in range(tickets):
        agent = router.assign(team=rng.choice(TEAMS), priority=rng.choice(PRIORITIES))
        open_tickets.append(agent.user_id if agent else None)
    fill = tickets / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(steady):
        index = rng.randrange(len(open_tickets))
        if open_tickets[index] is not None:
            router.release(open_tickets[index])  # type: ignore[arg-type]
        agent = router.assign(team=rng.choice(TEAMS), priority=rng.choice(PRIORITIES))
        open_tickets[index] = agent.user_id if agent else None
    steady_rate = steady / (time.perf_counter() - started)
    queued = sum(1 for a in open_tickets if a is None)
    return {"decide_fill_per_s": round(fill), "decide_steady_per_s": round(steady_rate), "decide_queued": queued}


async def bench_db(tickets: int, decisions: int, rng: random.Random, postgres: str | None = None) -> dict[str, float]:
    if not postgres:
        with tempfile.TemporaryDirectory() as tmp:
            return await _bench_db_at(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", tickets, decisions, rng)
    url, drop = await postgres_database(postgres)
    try:
        return await _bench_db_at(url, tickets, decisions, rng)
    finally:
        await drop


async def _bench_db_at(url: str, tickets: int, decisions: int, rng: random.Random) -> dict[str, float]:
    import sqlalchemy as sa

    from hub.events import utcnow
    from hub.storage import open_database
    from hub.storage.migrate import upgrade
    from hub.storage.schema import agent_profiles, contacts, conversations, users
    from hub.storage.schema import tickets as tickets_table
    from hub.tickets import transactions as tickets_tx

    await asyncio.to_thread(upgrade, url)
    db = open_database(url)
    pool = agents(200, rng)
    now = utcnow()

    def seed(conn: sa.Connection) -> None:
        conn.execute(
            sa.insert(users),
            [
                {
                    "id": a.user_id,
                    "name": f"agent {a.user_id}",
                    "email": f"a{a.user_id}@bench.test",
                    "role": "agent",
                    "extra": {},
                    "created_at": now,
                }
                for a in pool
            ],
        )
        conn.execute(
            sa.insert(contacts),
            [
                {"id": i, "name": None, "attributes": {}, "tags": [], "created_at": now, "updated_at": now}
                for i in range(1, tickets + 1)
            ],
        )
        conn.execute(
            sa.insert(conversations),
            [
                {
                    "id": i,
                    "contact_id": i,
                    "channel": "fake",
                    "status": "open",
                    "priority": "normal",
                    "handler": "human",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, tickets + 1)
            ],
        )
        loads: dict[int, int] = {}
        rows = []
        on_duty = [a for a in pool if a.on_duty]
        for i in range(1, tickets + 1):
            assignee = on_duty[i % len(on_duty)].user_id
            loads[assignee] = loads.get(assignee, 0) + 1
            rows.append(
                {
                    "id": i,
                    "conversation_id": i,
                    "contact_id": i,
                    "open_conversation_id": i,
                    "status": "open",
                    "priority": rng.choice(PRIORITIES),
                    "assignee_id": assignee,
                    "team": TEAMS[i % len(TEAMS)],
                    "source": "bench",
                    "reason": "",
                    "summary": "",
                    "kb_hits": [],
                    "created_at": now,
                    "updated_at": now,
                    "sla_paused_seconds": 0.0,
                    "escalations": 0,
                }
            )
        conn.execute(sa.insert(tickets_table), rows)
        conn.execute(
            sa.insert(agent_profiles),
            [
                {
                    "user_id": a.user_id,
                    "team": a.team,
                    "skills": sorted(a.skills),
                    "capacity": a.capacity,
                    "senior": a.senior,
                    "on_duty": a.on_duty,
                    "open_tickets": loads.get(a.user_id, 0),
                    "last_assigned_seq": 0,
                    "updated_at": now,
                }
                for a in pool
            ],
        )

    await db.write(seed)
    ids = [rng.randrange(1, tickets + 1) for _ in range(decisions)]
    started = time.perf_counter()
    for ticket_id in ids[: decisions // 2]:
        await db.write(tickets_tx.reroute, ticket_id, exclude=(), now=utcnow())
    sequential = (decisions // 2) / (time.perf_counter() - started)
    semaphore = asyncio.Semaphore(32)

    async def one(ticket_id: int) -> None:
        async with semaphore:
            await db.write(tickets_tx.reroute, ticket_id, exclude=(), now=utcnow())

    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in ids[decisions // 2 :]))
    concurrent = (decisions - decisions // 2) / (time.perf_counter() - started)
    open_count = await db.read(
        lambda conn: conn.execute(
            sa.select(sa.func.count()).select_from(tickets_table).where(tickets_table.c.status == "open")
        ).scalar_one()
    )
    await db.close()
    return {
        "db_sequential_per_s": round(sequential),
        "db_concurrent_per_s": round(concurrent),
        "db_open_tickets": open_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steady-state and database decisions (< 60 s)")
    parser.add_argument("--postgres", metavar="URL", help="the database part on a temporary PostgreSQL database")
    args = parser.parse_args()
    rng = random.Random(6)
    tickets, agents_count = 10_000, 200
    steady = 20_000 if args.quick else 100_000
    db_decisions = 600 if args.quick else 4_000
    figures: dict[str, float | int | str] = {"tickets": tickets, "agents": agents_count, "target_per_s": 2000}
    figures.update(bench_decide(tickets, steady, rng))
    print(
        f"routing decisions, in memory: fill {figures['decide_fill_per_s']:,}/s, "
        f"steady state with {tickets:,} open {figures['decide_steady_per_s']:,}/s ({agents_count} agents)"
    )
    figures.update(asyncio.run(bench_db(tickets, db_decisions, rng, args.postgres)))
    figures["db"] = "postgresql" if args.postgres else "sqlite"
    print(
        f"assignment transactions on {figures['db']} ({figures['db_open_tickets']:,} open tickets): "
        f"sequential {figures['db_sequential_per_s']:,}/s, 32 concurrent {figures['db_concurrent_per_s']:,}/s"
    )
    figures["meets_target"] = bool(figures["decide_steady_per_s"] >= 2000)
    emit(figures)


if __name__ == "__main__":
    main()
