"""Small asyncio helpers the hub's loops share."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
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


async def run_for_json(command: Sequence[str], *, cwd: Path, what: str, nice: int = 0) -> dict[str, Any]:
    """Run a child process that prints one JSON object on its last line, and return it.

    For the hub's trainings in child processes (the NLU, the urgency
    classifier). A non-zero exit raises ``RuntimeError("<what> failed (rc):
    <its last stderr line>")`` after logging the end of its output; a
    cancellation kills the child. ``nice`` lowers its priority (customers'
    messages first).
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )
    try:
        out, err = await process.communicate()
    except asyncio.CancelledError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or ["no output"]
        log.error("%s failed; its output ends:\n%s", what, "\n".join(lines[-30:]))
        raise RuntimeError(f"{what} failed ({process.returncode}): {lines[-1][:300]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))
