"""Work that must happen with its cause runs in the cause's transaction.

A feature that must act on a domain event (the tickets service on a
customer's message or a conversation change, the Slack desk on a ticket
change, the bot on a resolved conversation) registers a hook here. The
service that produces the event builds it inside the transaction that stores
its cause and runs the hooks there, so their work (a ticket, a job row)
commits or rolls back with the cause: a crash, or a lost bus message, between
the two can no longer drop it (STYLE habit 13). The bus then only notifies
(web chat pushes, waking workers, other instances).

A hook returns, optionally, what to do after the commit (publish the events
of what it did, wake a worker); it must not await inside the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from hub.events import Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
After = Callable[[], Awaitable[None]]
Hook = Callable[[Connection, Any], "After | None"]


class TxHooks:
    """Hooks by event type, run in the producing transaction (in registration order)."""

    def __init__(self) -> None:
        self._hooks: dict[type[Event], list[Hook]] = {}

    def add(self, event_type: type[E], hook: Callable[[Connection, E], After | None]) -> Callable[[], None]:
        """Run ``hook(conn, event)`` in every transaction that produces an
        ``event_type``; returns the function that removes it."""
        hooks = self._hooks.setdefault(event_type, [])
        hooks.append(hook)

        def remove() -> None:
            if hook in hooks:
                hooks.remove(hook)

        return remove

    def wants(self, event_type: type[Event]) -> bool:
        return bool(self._hooks.get(event_type))

    def run(self, conn: Connection, event: Event) -> list[After]:
        """Run the hooks for ``event`` in ``conn``'s transaction; an error
        rolls the cause back with it (the caller sees the error)."""
        afters: list[After] = []
        for hook in list(self._hooks.get(type(event), ())):
            after = hook(conn, event)
            if after is not None:
                afters.append(after)
        return afters


async def run_afters(afters: Iterable[After]) -> None:
    """After the commit: each hook's follow-up; one failing does not stop the rest
    (what they do is notification: the work itself is committed)."""
    for after in afters:
        try:
            await after()
        except Exception:
            log.exception("after-commit step failed")
