"""Small asyncio helpers the hub's loops share."""

from __future__ import annotations

import asyncio


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
