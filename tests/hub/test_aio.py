"""The hub's small asyncio helpers (hub.aio)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from hub.aio import cancel_and_wait, run_for_json, wait_event


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


@pytest.mark.asyncio
async def test_run_for_json_returns_the_childs_last_line_and_reports_its_failure(tmp_path: Path) -> None:
    said = await run_for_json(
        [sys.executable, "-c", "print('training...'); print('{\"seconds\": 1.5}')"], cwd=tmp_path, what="training"
    )
    assert said == {"seconds": 1.5}
    failing = [sys.executable, "-c", "import sys; print('first', file=sys.stderr); sys.exit('no model here')"]
    with pytest.raises(RuntimeError, match=r"^training failed \(1\): no model here$"):
        await run_for_json(failing, cwd=tmp_path, what="training", nice=5)


@pytest.mark.asyncio
async def test_a_cancelled_run_for_json_kills_its_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    running = asyncio.create_task(run_for_json([sys.executable, "-c", script], cwd=tmp_path, what="training"))
    while not pid_file.exists() or not pid_file.read_text():
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
