"""SLA policies and the scheduler that enforces them.

Each priority has a first-response and a resolution target. Deadlines are
stored on the ticket (``first_response_due``, ``resolution_due``), counted
from its creation plus the time spent waiting on the customer (conversation
status ``pending`` pauses the clock). Because the deadlines live in the
database, a restart loses nothing: the scheduler's first pass, right at
start-up, escalates whatever fell due while the hub was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.errors import ConfigError
from hub.models import Priority

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    first_response: timedelta
    resolution: timedelta

    def to_dict(self) -> dict[str, float]:
        return {
            "first_response_minutes": self.first_response.total_seconds() / 60,
            "resolution_minutes": self.resolution.total_seconds() / 60,
        }


def parse_policies(text: str) -> dict[Priority, Policy]:
    """``"urgent=15/240,high=60/480"`` (minutes) -> a policy per priority.

    Priorities left out have no SLA.
    """
    policies: dict[Priority, Policy] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, targets = part.partition("=")
        first, _, resolution = targets.partition("/")
        try:
            priority = Priority(name.strip())
            policies[priority] = Policy(
                first_response=timedelta(minutes=float(first)), resolution=timedelta(minutes=float(resolution))
            )
        except ValueError:
            raise ConfigError(
                f"HUB_SLA_POLICIES: cannot read {part!r}; expected priority=first_response/resolution in minutes"
            ) from None
    return policies


def deadlines(
    policies: dict[Priority, Policy], priority: Priority | str, created_at: datetime, paused_seconds: float
) -> tuple[datetime | None, datetime | None]:
    """``(first_response_due, resolution_due)`` for a ticket."""
    policy = policies.get(Priority(priority))
    if policy is None:
        return None, None
    shift = timedelta(seconds=paused_seconds)
    return created_at + policy.first_response + shift, created_at + policy.resolution + shift


class SlaScheduler:
    """Runs ``check()`` now and then every ``interval`` seconds (``wake()``
    runs it at once). One task, started and stopped by a cleanup context."""

    def __init__(self, check: Callable[[], Awaitable[int]], *, interval: float) -> None:
        self.check = check
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sla-scheduler")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SLA check failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
