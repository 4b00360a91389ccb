"""Durable outbound work for Slack: post and update ticket cards, mirror thread
messages, notify team channels.

The ``slack_jobs`` queue of ``hub.jobs``: a job row is written first; a
worker claims due rows with a lease, runs them and records the result.
429 (after its Retry-After), 5xx and transport errors go back to
``pending`` with backoff; permanent errors and the last attempt go to
``dead`` (listed and retried through the admin API). A crash mid-call leaves
the lease to expire and the job runs again. Jobs of one ticket run in order
(a thread reply needs its parent posted); an update that is still pending
absorbs later ones, since it renders the card from the ticket when it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

from sqlalchemy.engine import Connection

from hub.events import utcnow
from hub.jobs.queue import DEAD, PENDING, Queue, QueueSpec
from hub.jobs.worker import JobWorker, Tuning
from hub.storage import Database
from hub.storage.schema import slack_jobs

SENDING, DONE = "sending", "done"
# erase_card: a contact was erased; delete the card at {"channel", "ts"} and
# the hub's messages in its thread (the payload names a Slack message only).
# erase_message: delete the one message at {"channel", "ts"} (a thread message
# that went up after its ticket was erased).
# sla_warning: {"channel", "text", "target"}: an SLA near its breach, told to the
# assignee or the team (after the ticket's card, whose link it adds).
# team_moved: {"team"}: the ticket moved to that team; its channel is told,
# with a link to the card (which stays where its thread is).
KINDS = (
    "post_ticket",
    "update_ticket",
    "thread",
    "notify",
    "escalate",
    "erase_card",
    "erase_message",
    "sla_warning",
    "team_moved",
)
__all__ = [
    "DEAD",
    "DONE",
    "KINDS",
    "PENDING",
    "SENDING",
    "SLACK_JOBS",
    "Job",
    "SlackJobWorker",
    "enqueue",
    "enqueue_erase",
]


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    ticket_id: int | None
    payload: dict[str, Any]
    attempts: int  # this run's: 1 the first time; more after a retry or a crash (its lease taken over)
    created_at: datetime
    last_error: str | None = None  # an earlier run's failure (kept when an admin requeues a dead job)


SLACK_JOBS: Queue[Job] = Queue(
    QueueSpec("slack", slack_jobs, group="ticket_id", item=Job, noun="Slack job", unlisted=("dedup_key",))
)


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
    return SLACK_JOBS.enqueue(
        conn,
        {"kind": kind, "ticket_id": ticket_id, "dedup_key": dedup_key, "payload": payload},
        utcnow(),
        coalesce=("kind", "ticket_id") if coalesce and ticket_id is not None else (),
        dedup=True,
    )


def enqueue_erase(conn: Connection, channel: str, ts: str, *, thread: bool = True) -> None:
    """In the caller's transaction (an erasure, or a post that outlived its
    ticket): delete the hub's message at ``channel``/``ts`` and, with
    ``thread``, the hub's messages in its thread. The job holds no personal data."""
    kind = "erase_card" if thread else "erase_message"
    enqueue(conn, kind, {"channel": channel, "ts": ts}, dedup_key=f"erase:{channel}:{ts}")


Execute = Callable[[Job], Awaitable[None]]


class SlackJobWorker(JobWorker[Job]):
    """Claims due Slack jobs and runs them through ``execute`` (which raises
    ``ChannelSendError`` on failure); ``notify()`` wakes it at once."""

    def __init__(self, db: Database, execute: Execute, **tuning: Unpack[Tuning]) -> None:
        options: Tuning = {"max_attempts": 10, "concurrency": 4}
        options.update(tuning)
        super().__init__(db, SLACK_JOBS, execute, name="slack-jobs", **options)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; let calls in flight finish, then cancel."""
        await super().stop(timeout)
