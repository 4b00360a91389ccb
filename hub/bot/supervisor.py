"""Child processes the hub runs itself (Rasa, the action server): started in
a cleanup context, their output logged line by line under their name,
restarted with backoff when they crash, stopped with SIGTERM (then SIGKILL).
Readiness is the client's business (the bot bridge polls Rasa's /status)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}  # callers may pass a complete environment
        self.cwd = cwd
        self.max_backoff = max_backoff
        self.restarts = 0
        self.process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._log = logging.getLogger(f"child.{name}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    async def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            self._log.info("started (pid %s): %s", self.process.pid, " ".join(self.argv))
            await self._pump(self.process)
            code = await self.process.wait()
            if self._stopping:
                break
            self.restarts += 1
            if asyncio.get_running_loop().time() - started > 60:
                delay = 1.0
            self._log.error("exited with %s; restarting in %.0f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(self.max_backoff, delay * 2)

    async def _pump(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._log.info("%s", line)

    async def kill(self) -> None:
        """Crash it on purpose (tests): the supervisor restarts it."""
        if self.running:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self.running:
            assert self.process is not None
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                await asyncio.wait_for(self.process.wait(), timeout)
            except ProcessLookupError:
                pass
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
