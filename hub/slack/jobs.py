"""Durable outbound work for Slack: post and update ticket cards, mirror thread
messages, notify team channels.

The same approach as ``hub.conversations.outbox`` (and its ``backoff``): a job row is
written first; a worker claims due rows with a lease, runs them and records
the result. 429 (after its Retry-After), 5xx and transport errors go back to
``pending`` with backoff; permanent errors and the last attempt go to
``dead`` (listed and retried through the admin API). A crash mid-call leaves
the lease to expire and the job runs again. Jobs of one ticket run in order
(a thread reply needs its parent posted); an update that is still pending
absorbs later ones, since it renders the card from the ticket when it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.conversations.outbox import backoff
from hub.errors import ChannelSendError, NotFound
from hub.events import utcnow
from hub.jobs.worker import PollingWorker
from hub.storage import Database, insert_ignore
from hub.storage.schema import slack_jobs

log = logging.getLogger(__name__)

PENDING, SENDING, DONE, DEAD = "pending", "sending", "done", "dead"
KINDS = ("post_ticket", "update_ticket", "thread", "notify", "escalate")


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    ticket_id: int | None
    payload: dict[str, Any]
    attempts: int


def enqueue(
    conn: Connection,
    kind: str,
    payload: dict[str, Any],
    *,
    ticket_id: int | None = None,
    coalesce: bool = False,
    dedup_key: str | None = None,
) -> int | None:
    """Add a job in the caller's transaction. Returns None, adding nothing,
    when ``coalesce`` and one of the same kind for the ticket is still
    waiting, or when a job with ``dedup_key`` already exists."""
    if kind not in KINDS:
        raise ValueError(f"unknown Slack job kind {kind!r}")
    if coalesce and ticket_id is not None:
        waiting = conn.execute(
            sa.select(slack_jobs.c.id)
            .where(slack_jobs.c.kind == kind, slack_jobs.c.ticket_id == ticket_id, slack_jobs.c.status == PENDING)
            .limit(1)
        ).first()
        if waiting is not None:
            return None
    now = utcnow()
    return conn.execute(
        insert_ignore(conn, slack_jobs)
        .values(
            kind=kind,
            ticket_id=ticket_id,
            dedup_key=dedup_key,
            payload=payload,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(slack_jobs.c.id)
    ).scalar_one_or_none()


def claim_due(conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[Job]:
    older = slack_jobs.alias("older")
    blocked = (
        sa.select(older.c.id)
        .where(
            older.c.ticket_id == slack_jobs.c.ticket_id,
            older.c.id < slack_jobs.c.id,
            older.c.status.in_((PENDING, SENDING)),
        )
        .exists()
    )
    due = sa.or_(
        sa.and_(slack_jobs.c.status == PENDING, slack_jobs.c.next_attempt_at <= now),
        sa.and_(slack_jobs.c.status == SENDING, slack_jobs.c.lease_until < now),
    )
    stmt = sa.select(slack_jobs.c.id).where(due, ~blocked).order_by(slack_jobs.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=slack_jobs)
    ids = list(conn.execute(stmt).scalars())
    if not ids:
        return []
    conn.execute(
        sa.update(slack_jobs)
        .where(slack_jobs.c.id.in_(ids))
        .values(status=SENDING, lease_until=now + lease, attempts=slack_jobs.c.attempts + 1, updated_at=now)
    )
    found = conn.execute(sa.select(slack_jobs).where(slack_jobs.c.id.in_(ids)).order_by(slack_jobs.c.id))
    return [
        Job(id=r.id, kind=r.kind, ticket_id=r.ticket_id, payload=dict(r.payload), attempts=r.attempts) for r in found
    ]


def mark_done(conn: Connection, job_id: int) -> None:
    conn.execute(
        sa.update(slack_jobs)
        .where(slack_jobs.c.id == job_id)
        .values(status=DONE, lease_until=None, last_error=None, updated_at=utcnow())
    )


def mark_failed(conn: Connection, job_id: int, error: str, *, retry_at: datetime | None) -> None:
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None, "updated_at": utcnow()}
    if retry_at is None:
        values["status"] = DEAD
    else:
        values.update(status=PENDING, next_attempt_at=retry_at)
    conn.execute(sa.update(slack_jobs).where(slack_jobs.c.id == job_id).values(**values))


def depth(conn: Connection) -> dict[str, int]:
    counts = {PENDING: 0, SENDING: 0, DONE: 0, DEAD: 0}
    counts.update(
        dict(conn.execute(sa.select(slack_jobs.c.status, sa.func.count()).group_by(slack_jobs.c.status)).all())
    )
    return counts


def list_jobs(conn: Connection, status: str | None, limit: int) -> list[dict[str, Any]]:
    stmt = sa.select(slack_jobs).order_by(slack_jobs.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(slack_jobs.c.status == status)
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "ticket_id": r.ticket_id,
            "status": r.status,
            "attempts": r.attempts,
            "next_attempt_at": r.next_attempt_at.isoformat(),
            "last_error": r.last_error,
            "created_at": r.created_at.isoformat(),
        }
        for r in conn.execute(stmt)
    ]


def requeue_dead(conn: Connection, job_id: int) -> None:
    now = utcnow()
    done = conn.execute(
        sa.update(slack_jobs)
        .where(slack_jobs.c.id == job_id, slack_jobs.c.status == DEAD)
        .values(status=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
    )
    if done.rowcount == 0:
        raise NotFound(f"no dead Slack job {job_id}")


Execute = Callable[[Job], Awaitable[None]]


class SlackJobWorker(PollingWorker[Job]):
    """Claims due Slack jobs and runs them through ``execute`` (which raises
    ``ChannelSendError`` on failure); ``notify()`` wakes it at once."""

    name = "slack-jobs"

    def __init__(
        self,
        db: Database,
        execute: Execute,
        *,
        max_attempts: int = 10,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        lease_seconds: float = 60.0,
        concurrency: int = 4,
        poll_interval: float = 1.0,
    ) -> None:
        self.db = db
        self.execute = execute
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = timedelta(seconds=lease_seconds)
        super().__init__(concurrency=concurrency, poll_interval=poll_interval)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; let calls in flight finish, then cancel."""
        await super().stop(timeout)

    async def claim(self) -> list[Job]:
        return await self.db.write(claim_due, utcnow(), self.lease, self.concurrency * 4)

    def group_of(self, job: Job) -> Any:
        return job.ticket_id if job.ticket_id is not None else ("job", job.id)

    async def process(self, job: Job) -> bool:
        return await self._run_job(job)

    async def _run_job(self, job: Job) -> bool:
        try:
            await self.execute(job)
        except ChannelSendError as err:
            error = err
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug must not kill the worker
            log.exception("Slack job %s (%s) raised", job.id, job.kind)
            error = ChannelSendError(f"{type(err).__name__}: {err}", retryable=True)
        else:
            await self.db.write(mark_done, job.id)
            return True
        dead = not error.retryable or job.attempts >= self.max_attempts
        retry_at = None
        if not dead:
            delay = (
                error.retry_after
                if error.retry_after is not None
                else backoff(job.attempts, base=self.base_delay, cap=self.max_delay)
            )
            retry_at = utcnow() + timedelta(seconds=delay)
        log.warning(
            "Slack job %s (%s) failed (attempt %s, %s): %s",
            job.id,
            job.kind,
            job.attempts,
            "dead" if dead else f"retry at {retry_at:%H:%M:%S}",
            error.message,
        )
        await self.db.write(mark_failed, job.id, error.message, retry_at=retry_at)
        return False
