"""The hub's small asyncio helpers (hub.aio)."""

from __future__ import annotations

import asyncio

import pytest

from hub.aio import cancel_and_wait, wait_event


async def _swallows_first_cancel(seen: list[str]) -> None:
    """A reader that, like redis-py's pub/sub on its reconnect path, catches
    the first cancellation and goes back to waiting."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        seen.append("swallowed")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise


@pytest.mark.asyncio
async def test_a_task_that_swallows_its_cancellation_is_cancelled_again_until_it_ends() -> None:
    seen: list[str] = []
    task = asyncio.create_task(_swallows_first_cancel(seen))
    await asyncio.sleep(0)
    # The guard only turns a hang into a failure; the helper ends it within ~0.05 s.
    async with asyncio.timeout(30):
        await cancel_and_wait(task, again_after=0.05)
    assert task.cancelled()
    assert seen == ["swallowed", "cancelled"]


@pytest.mark.asyncio
async def test_a_single_cancel_is_enough_for_a_well_behaved_task_and_its_error_is_retrieved() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.done() and not task.cancelled()
    assert isinstance(task.exception(), RuntimeError)
    # A finished task is left as it is.
    await cancel_and_wait(task)


@pytest.mark.asyncio
async def test_the_callers_own_cancellation_still_propagates() -> None:
    seen: list[str] = []
    stubborn = asyncio.create_task(_swallows_first_cancel(seen))
    await asyncio.sleep(0)
    closing = asyncio.create_task(cancel_and_wait(stubborn, again_after=60))
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    stubborn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stubborn


@pytest.mark.asyncio
async def test_wait_event_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
