"""Small asyncio helpers the hub's loops share."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` for up to ``timeout`` seconds; True when it was set.

    ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11 ``wait_for``
    can swallow a cancellation that arrives just as the event is set (it
    returns the result instead), and a loop stopped by cancelling its task
    then runs on, holding up the hub's shutdown.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_and_wait(task: asyncio.Task[Any], *, again_after: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again if it has not.

    A task that reads through a library may never see its cancellation:
    redis-py's pub/sub reader can catch the ``CancelledError`` on its
    reconnect path and go back to waiting on the socket, and the task then
    sits in "cancelling" for ever while a shutdown waits on it (seen as a
    hung hub stop after Redis came back). Cancelling again, every
    ``again_after`` seconds until it is done, reaches the new wait. Whatever
    the task ended with is retrieved here, so nothing is logged as never
    retrieved; the caller's own cancellation still propagates.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_after)
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r on cancel", task.get_name(), task.exception())
