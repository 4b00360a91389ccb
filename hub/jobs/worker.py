"""Background workers over durable queues (outbox, bot jobs, Slack jobs).

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
from collections.abc import Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


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
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

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
