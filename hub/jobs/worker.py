"""Background workers over durable queues (outbox, bot jobs, Slack jobs, webhooks).

``PollingWorker`` is the loop; ``JobWorker`` works a ``hub.jobs.queue.Queue``.
Each claims due rows with a lease in one transaction, then works them: rows
of one group (a conversation, a ticket) strictly in order, groups in
parallel up to ``concurrency``. ``notify()`` wakes the loop at once; otherwise
it polls every ``poll_interval`` for retries that have come due. ``stop()``
stops claiming and lets the work in flight finish (drain), then cancels.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from typing import Any, Generic, TypedDict, TypeVar, Unpack

from hub.aio import wait_event
from hub.errors import ChannelSendError
from hub.events import utcnow
from hub.jobs.queue import Claimed, Queue, backoff
from hub.storage import Database

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Job = TypeVar("Job", bound=Claimed)


class PollingWorker(ABC, Generic[Item]):
    name = "worker"

    def __init__(self, *, concurrency: int, poll_interval: float) -> None:
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def claim(self) -> list[Item]:
        """Lease due items (their lease expiring means a crash: claimed again)."""

    @abstractmethod
    def group_of(self, item: Item) -> Hashable:
        """Items of one group are processed in claim order, one at a time."""

    @abstractmethod
    async def process(self, item: Item) -> bool:
        """Work one item; False keeps the rest of its group for a later pass."""

    def notify(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s pass failed; retrying", self.name)
                worked = 0
            if worked or self._stopping:
                continue
            await wait_event(self._wake, self.poll_interval)

    async def run_once(self) -> int:
        claimed = await self.claim()
        if not claimed:
            return 0
        groups: dict[Hashable, list[Item]] = defaultdict(list)
        for item in claimed:
            groups[self.group_of(item)].append(item)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def in_order(items: list[Item]) -> None:
            async with semaphore:
                for item in items:
                    if not await self.process(item):
                        break  # keep the group's order: later items wait

        await asyncio.gather(*(in_order(items) for items in groups.values()))
        return len(claimed)


Handler = Callable[[Job], Awaitable[Any]]


class Tuning(TypedDict, total=False):
    """A worker's knobs (from Settings); each queue's worker has its own defaults."""

    max_attempts: int
    base_delay: float  # seconds; backoff doubles it per attempt, with full jitter
    max_delay: float
    lease_seconds: float  # a claimed row unfinished this long is taken to be a crash
    concurrency: int  # groups worked at once
    poll_interval: float  # for retries coming due; notify() wakes the worker sooner


class JobWorker(PollingWorker[Job]):
    """Works a durable queue: claims due rows with a lease, runs ``handler``
    on each and records the result in the queue.

    The handler raises ``ChannelSendError(retryable=..., retry_after=...)``
    on failure; any other exception is a bug, logged and retried like a
    retryable failure, so one bad row cannot kill the worker. A retryable
    failure waits ``retry_after`` or a full-jitter backoff; a permanent one,
    or the ``max_attempts``-th, goes dead. ``on_done``/``on_failed`` run after
    the result is stored (events, metrics): they notify, the work is in the row.
    """

    def __init__(
        self,
        db: Database,
        queue: Queue[Job],
        handler: Handler[Job],
        *,
        name: str | None = None,
        claim_batch: int = 4,
        on_done: Callable[[Job, Any], Awaitable[None]] | None = None,
        on_failed: Callable[[Job, ChannelSendError, bool], Awaitable[None]] | None = None,
        **tuning: Unpack[Tuning],
    ) -> None:
        super().__init__(concurrency=tuning.get("concurrency", 16), poll_interval=tuning.get("poll_interval", 1.0))
        self.name = name or f"{queue.name}-worker"
        self.db = db
        self.queue = queue
        self.handler = handler
        self.max_attempts = tuning.get("max_attempts", 8)
        self.base_delay = tuning.get("base_delay", 1.0)
        self.max_delay = tuning.get("max_delay", 300.0)
        self.lease = timedelta(seconds=tuning.get("lease_seconds", 60.0))
        self.claim_batch = claim_batch  # rows claimed per pass, per unit of concurrency
        self.on_done = on_done
        self.on_failed = on_failed

    async def claim(self) -> list[Job]:
        return await self.db.write(self.queue.claim_due, utcnow(), self.lease, self.concurrency * self.claim_batch)

    def group_of(self, item: Job) -> Hashable:
        return self.queue.group_of(item)

    async def process(self, item: Job) -> bool:
        try:
            result = await self.handler(item)
        except ChannelSendError as err:
            error = err
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug must not kill the worker
            log.exception("%s: job %s raised", self.name, item.id)
            error = ChannelSendError(f"{type(err).__name__}: {err}", retryable=True)
        else:
            await self.db.write(self.queue.mark_done, item, result, utcnow())
            if self.on_done is not None:
                await self.on_done(item, result)
            return True
        dead = not error.retryable or item.attempts >= self.max_attempts
        retry_at = None
        if not dead:
            delay = (
                error.retry_after
                if error.retry_after is not None
                else backoff(item.attempts, base=self.base_delay, cap=self.max_delay)
            )
            retry_at = utcnow() + timedelta(seconds=delay)
        log.warning(
            "%s: job %s failed (attempt %s, %s): %s",
            self.name,
            item.id,
            item.attempts,
            "dead" if dead else f"retry at {retry_at:%H:%M:%S}",
            error.message,
        )
        await self.db.write(self.queue.mark_failed, item, error, retry_at, utcnow())
        if self.on_failed is not None:
            await self.on_failed(item, error, dead)
        return False  # keep the group's order: its later rows wait for this one
