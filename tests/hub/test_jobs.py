"""The durable queue itself (hub.jobs): order per group, leases, backoff, dead letters, requeue, SKIP LOCKED."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import ChannelSendError, NotFound
from hub.events import utcnow
from hub.jobs.queue import Queue, QueueSpec, backoff
from hub.jobs.worker import JobWorker
from hub.storage import Database, open_database
from hub.storage.schema import slack_jobs
from tests.conftest import Hub

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class Job:
    id: int
    ticket_id: int | None
    attempts: int


def make_queue(hooks: list[tuple[str, int]] | None = None) -> Queue[Job]:
    """A queue over the ``slack_jobs`` table whose hooks record what ran."""
    calls = hooks if hooks is not None else []
    return Queue(
        QueueSpec(
            "test",
            slack_jobs,
            group="ticket_id",
            item=Job,
            noun="test job",
            on_done=lambda conn, item, result: calls.append(("done", item.id)),
            on_dead=lambda conn, item, error: calls.append(("dead", item.id)),
            on_requeue=lambda conn, row: calls.append(("requeue", row.id)),
        )
    )


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    yield database
    await database.close()


async def add(db: Database, queue: Queue[Job], ticket_id: int | None, now: datetime = T0) -> int:
    job_id = await db.write(queue.enqueue, {"kind": "notify", "ticket_id": ticket_id, "payload": {}}, now)
    assert job_id is not None
    return job_id


async def claim(db: Database, queue: Queue[Job], now: datetime = T0, limit: int = 10) -> list[int]:
    return [job.id for job in await db.write(queue.claim_due, now, LEASE, limit)]


@pytest.mark.asyncio
async def test_rows_of_one_group_are_claimed_in_order_groups_in_parallel(db: Database) -> None:
    queue = make_queue()
    first, second, other, loose = [await add(db, queue, t) for t in (1, 1, 2, None)]
    claimed = await db.write(queue.claim_due, T0, LEASE, 10)
    assert [job.id for job in claimed] == [first, other, loose]  # second waits behind first
    assert await claim(db, queue) == []
    # A retry keeps the group blocked until the older row is done.
    job = claimed[0]
    await db.write(queue.mark_failed, job, ChannelSendError("HTTP 503", retryable=True), T0 + timedelta(seconds=5), T0)
    assert await claim(db, queue, T0 + timedelta(seconds=1)) == []
    [job] = await db.write(queue.claim_due, T0 + timedelta(seconds=6), LEASE, 10)
    assert (job.id, job.attempts) == (first, 2)
    await db.write(queue.mark_done, job, None, T0 + timedelta(seconds=6))
    assert await claim(db, queue, T0 + timedelta(seconds=6)) == [second]


@pytest.mark.asyncio
async def test_a_row_deleted_under_its_worker_leaves_the_row_that_took_its_id_alone(db: Database) -> None:
    """An erasure deletes a job while a worker holds it, and queues its own
    job, which SQLite gives the freed highest id (forced here on both
    databases): the first worker's result must not mark the new row."""
    hooks: list[tuple[str, int]] = []
    queue = make_queue(hooks)
    job_id = await add(db, queue, 5)
    [held] = await db.write(queue.claim_due, T0, LEASE, 10)

    def erase_and_requeue(conn: Connection) -> None:
        conn.execute(sa.delete(slack_jobs).where(slack_jobs.c.id == job_id))
        queue.enqueue(conn, {"id": job_id, "kind": "erase_card", "ticket_id": None, "payload": {}}, T0)

    await db.write(erase_and_requeue)
    await db.write(queue.mark_done, held, None, T0)
    await db.write(queue.mark_failed, held, ChannelSendError("boom", retryable=False), None, T0)
    assert hooks == []
    assert await db.read(queue.depth) == {"pending": 1, "sending": 0, "done": 0, "dead": 0}
    assert await claim(db, queue) == [job_id]


@pytest.mark.asyncio
async def test_an_expired_lease_is_claimed_again(db: Database) -> None:
    queue = make_queue()
    job_id = await add(db, queue, 7)
    assert await claim(db, queue) == [job_id]
    assert await claim(db, queue, T0 + LEASE - timedelta(seconds=1)) == []  # still leased: the worker is alive
    [again] = await db.write(queue.claim_due, T0 + LEASE + timedelta(seconds=1), LEASE, 10)
    assert (again.id, again.attempts) == (job_id, 2)
    assert (await db.read(queue.depth))["sending"] == 1


def test_backoff_stays_within_full_jitter_bounds() -> None:
    rng = random.Random(11)
    for attempt in range(0, 15):
        ceiling = min(300.0, 2.0 * 2 ** max(0, attempt - 1))
        samples = [backoff(attempt, base=2.0, cap=300.0, rng=rng) for _ in range(100)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2  # jitter spans the range, not a fixed delay
    assert 0 <= backoff(3, base=1.0, cap=60.0) <= 4.0  # the module's own generator


@pytest.mark.asyncio
async def test_dead_letter_listing_and_requeue(db: Database) -> None:
    hooks: list[tuple[str, int]] = []
    queue = make_queue(hooks)
    job_id = await add(db, queue, 3)
    [job] = await db.write(queue.claim_due, T0, LEASE, 10)
    await db.write(queue.mark_failed, job, ChannelSendError("x" * 3000, retryable=False), None, T0)
    assert hooks == [("dead", job_id)]
    counts = await db.read(queue.depth)
    assert counts == {"pending": 0, "sending": 0, "done": 0, "dead": 1}
    [entry] = await db.read(queue.list, "dead", 10)
    assert entry["id"] == job_id and entry["attempts"] == 1 and len(entry["last_error"]) == 2000
    assert "payload" not in entry and "lease_until" not in entry
    assert isinstance(entry["next_attempt_at"], str)
    assert await db.read(queue.list, "pending", 10) == []

    later = T0 + timedelta(hours=1)
    await db.write(queue.requeue_dead, job_id, later)
    assert hooks[-1] == ("requeue", job_id)
    with pytest.raises(NotFound, match=f"no dead test job {job_id}"):
        await db.write(queue.requeue_dead, job_id, later)  # pending now, not dead
    with pytest.raises(NotFound):
        await db.write(queue.requeue_dead, 999_999, later)
    [job] = await db.write(queue.claim_due, later, LEASE, 10)
    assert (job.id, job.attempts) == (job_id, 1)  # attempts start over
    await db.write(queue.mark_done, job, None, later)
    assert hooks[-1] == ("done", job_id)
    assert (await db.read(queue.depth))["done"] == 1


@pytest.mark.asyncio
async def test_enqueue_coalesces_on_a_pending_row_and_dedups_on_a_unique_key(db: Database) -> None:
    queue = make_queue()
    values = {"kind": "update_ticket", "ticket_id": 5, "payload": {}}
    first = await db.write(queue.enqueue, values, T0, coalesce=("kind", "ticket_id"))
    assert await db.write(queue.enqueue, values, T0, coalesce=("kind", "ticket_id")) is None
    assert await db.write(queue.enqueue, {**values, "kind": "thread"}, T0, coalesce=("kind", "ticket_id")) is not None
    keyed = {"kind": "post_ticket", "ticket_id": 6, "payload": {}, "dedup_key": "post:6"}
    assert await db.write(queue.enqueue, keyed, T0, dedup=True) is not None
    assert await db.write(queue.enqueue, keyed, T0, dedup=True) is None
    assert first is not None


@pytest.mark.asyncio
async def test_worker_retries_with_retry_after_then_dead_letters(db: Database) -> None:
    queue = make_queue()
    outcomes: list[tuple[int, bool]] = []
    errors = [ChannelSendError("HTTP 429", retryable=True, retry_after=120.0), ChannelSendError("boom", retryable=True)]

    async def handler(job: Job) -> None:
        raise errors.pop(0)

    async def on_failed(job: Job, error: ChannelSendError, dead: bool) -> None:
        outcomes.append((job.attempts, dead))

    worker = JobWorker(db, queue, handler, max_attempts=2, on_failed=on_failed)
    job_id = await add(db, queue, 9, utcnow())
    assert await worker.run_once() == 1
    [row] = await db.read(lambda c: c.execute(sa.select(slack_jobs).where(slack_jobs.c.id == job_id)).all())
    assert row.status == "pending" and row.last_error == "HTTP 429"
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert 110 < wait <= 120  # the provider's Retry-After, not the backoff
    await db.write(lambda c: c.execute(sa.update(slack_jobs).values(next_attempt_at=utcnow())))
    assert await worker.run_once() == 1
    assert outcomes == [(1, False), (2, True)]  # the last attempt goes dead
    assert (await db.read(queue.depth))["dead"] == 1


@pytest.mark.asyncio
async def test_worker_treats_a_handler_bug_as_retryable_and_records_success(db: Database) -> None:
    queue = make_queue()
    done: list[tuple[int, Any]] = []
    calls = 0

    async def handler(job: Job) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("missing")
        return "ok"

    async def on_done(job: Job, result: Any) -> None:
        done.append((job.id, result))

    worker = JobWorker(db, queue, handler, base_delay=0.0, max_delay=0.0, on_done=on_done)
    job_id = await add(db, queue, None, utcnow())
    await worker.run_once()
    [row] = await db.read(lambda c: c.execute(sa.select(slack_jobs)).all())
    assert row.status == "pending" and row.last_error == "KeyError: 'missing'"
    await worker.run_once()
    assert done == [(job_id, "ok")]
    assert (await db.read(queue.depth))["done"] == 1


@pytest.mark.asyncio
async def test_concurrent_claimers_never_get_the_same_row(database_url: str, db: Database) -> None:
    """Two open transactions claim at once: SKIP LOCKED hands each different rows."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: nothing to race")
    from sqlalchemy.ext.asyncio import create_async_engine

    queue = make_queue()
    ids = [await add(db, queue, ticket) for ticket in range(1, 11)]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as first:
            mine = await first.run_sync(_claim_ids, queue, 4)
            async with engine.begin() as second:
                # Without SKIP LOCKED this would wait on the first's locks (or take its rows).
                theirs = await asyncio.wait_for(second.run_sync(_claim_ids, queue, 10), 10)
        assert len(mine) == 4 and len(theirs) == 6
        assert set(mine).isdisjoint(theirs) and set(mine) | set(theirs) == set(ids)
        # Many claimers at once through the pool: still every row exactly once.
        await db.write(lambda c: c.execute(sa.update(slack_jobs).values(status="pending", lease_until=None)))
        claims = await asyncio.gather(*(db.write(queue.claim_due, T0, LEASE, 2) for _ in range(8)))
        claimed = [job.id for batch in claims for job in batch]
        assert sorted(claimed) == sorted(ids)
    finally:
        await engine.dispose()


def _claim_ids(conn: Connection, queue: Queue[Job], limit: int) -> list[int]:
    return [job.id for job in queue.claim_due(conn, T0, LEASE, limit)]


@pytest.mark.asyncio
async def test_one_admin_api_over_every_queue(hub: Hub) -> None:
    bot = await hub.api("GET", "/api/v1/jobs", params={"queue": "bot"})
    assert bot == {"counts": {"pending": 0, "running": 0, "done": 0, "dead": 0}, "items": []}
    slack = await hub.api("GET", "/api/v1/jobs", params={"queue": "slack", "status": "dead", "limit": "5"})
    assert slack["counts"] == {"pending": 0, "sending": 0, "done": 0, "dead": 0}
    # A status of another queue (the document lists them all) matches nothing here.
    other = await hub.api("GET", "/api/v1/jobs", params={"queue": "bot", "status": "delivered"})
    assert other["items"] == []
    await hub.api("GET", "/api/v1/jobs", params={"queue": "bot", "status": "lost"}, expect=400)
    await hub.api("GET", "/api/v1/jobs", params={"queue": "nope"}, expect=400)
    await hub.api("GET", "/api/v1/jobs", expect=400)
    await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox"}, role="agent", expect=403)
    await hub.api("POST", "/api/v1/jobs/nope/1/retry", expect=404)
    await hub.api("POST", "/api/v1/jobs/slack/1/retry", expect=404)  # no such dead job
    await hub.api("POST", "/api/v1/jobs/bot/1/retry", role="agent", expect=403)
