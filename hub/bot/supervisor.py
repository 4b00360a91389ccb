"""Child processes the hub runs itself (Rasa, the action server): started in
a cleanup context, their output logged line by line under their name,
restarted with backoff when they crash, stopped with SIGTERM (then SIGKILL).
Readiness is the client's business (the bot bridge polls Rasa's /status).

They must not outlive the hub, however it ends: each runs under a tether
(hub/bot/tether.py) that ends its whole process group when the hub dies,
and ``Children`` records them in ``data_dir/run/children.json`` so that the
next hub ends any that survived anyway (hub/bot/pidfile.py). A child whose
port is already taken is not started (it would only crash-loop): the log
names the port and, on Linux, the process holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from hub.bot import tether
from hub.bot.pidfile import PidFile, Recorded, process_start_time
from hub.logs import redact_command

log = logging.getLogger(__name__)

TETHER = Path(tether.__file__).resolve()


# How long a crashed child's remaining output may delay its restart.
PUMP_DRAIN_SECONDS = 2.0
# A child's output is read in chunks of this size, and one line of it is
# logged up to this many bytes (a longer one is cut, the rest counted).
CHUNK_BYTES = 64 * 1024
MAX_LOGGED_LINE = 8 * 1024
# How often a child's exit is looked for besides Process.wait() (see exited()).
EXIT_POLL_SECONDS = 0.5


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        max_backoff: float = 30.0,
        grace: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}  # callers may pass a complete environment
        self.cwd = cwd
        self.port = port
        self.max_backoff = max_backoff
        self.grace = grace
        self.restarts = 0
        self.blocked: str | None = None  # why it cannot start (its port is taken), for /readyz
        self.process: asyncio.subprocess.Process | None = None
        self.on_spawn: Callable[[], Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._log = logging.getLogger(f"child.{name}")
        self._pipe: tuple[int, int] | None = None  # the tether's read end, the hub's write end

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        # The hub only holds the write end; the kernel closes it when the hub dies.
        self._pipe = os.pipe()
        self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    async def _supervise(self) -> None:
        assert self._pipe is not None
        delay = 1.0
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            if self.port is not None and port_in_use(self.port):
                holder = port_holder(self.port)
                self.blocked = f"port {self.port} is already in use by another process" + (
                    f" ({holder})" if holder else ""
                )
                self._log.error(
                    "not started: %s, perhaps left by an earlier hub; retrying in %.0f s", self.blocked, delay
                )
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
                continue
            self.blocked = None
            read_end = self._pipe[0]
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", str(TETHER), str(read_end), str(self.grace), "--", *self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(read_end,),
            )  # fmt: skip
            self._log.info("started (pid %s): %s", self.process.pid, redact_command(self.argv))
            if self.on_spawn is not None:
                await self.on_spawn()
            pump = asyncio.create_task(self._pump(self.process), name=f"pump-{self.name}")
            try:
                code = await exited(self.process)
                # Workers that outlive their parent in its group go with it.
                _signal_group(self.process.pid, signal.SIGKILL)
                # The rest of the dying group's output, but never wait on it for
                # long: a process outside the group may still hold the pipe, and
                # the restart must not hang on it.
                await asyncio.wait({pump}, timeout=PUMP_DRAIN_SECONDS)
                if not pump.done():
                    self._log.warning(
                        "its output pipe is still held open by a process outside its group; not read further"
                    )
            finally:
                if not pump.done():
                    pump.cancel()
                    # Its pipe no longer read: closed here (asyncio's Process has
                    # no public close) rather than left to the garbage collector.
                    self.process._transport.close()  # type: ignore[attr-defined]
            if self._stopping:
                break
            self.restarts += 1
            if asyncio.get_running_loop().time() - started > 60:
                delay = 1.0
            self._log.error("exited with %s; restarting in %.0f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(self.max_backoff, delay * 2)

    async def _pump(self, process: asyncio.subprocess.Process) -> None:
        """Log the child's output line by line, and never stop reading it.

        Read in chunks, not with ``readline()``: that raises on a line longer
        than the stream's limit (64 KiB), which ended the pump; the output
        then piled up unread until the transport paused, the child's exit was
        never seen (``Process.wait()`` waits for the pipe's end too) and it
        was never restarted. A line longer than ``MAX_LOGGED_LINE`` bytes is
        logged cut there, with how much was left out.
        """
        assert process.stdout is not None
        kept = bytearray()  # the current line, up to MAX_LOGGED_LINE bytes
        left_out = 0  # and how many bytes of it beyond those
        while chunk := await process.stdout.read(CHUNK_BYTES):
            *ends, rest = chunk.split(b"\n")
            for end in ends:
                self._emit(bytes(kept) + end, left_out)
                kept.clear()
                left_out = 0
            room = max(MAX_LOGGED_LINE - len(kept), 0)
            kept += rest[:room]
            left_out += len(rest[room:])
        if kept or left_out:
            self._emit(bytes(kept), left_out)

    def _emit(self, raw: bytes, left_out: int) -> None:
        left_out += max(len(raw) - MAX_LOGGED_LINE, 0)
        line = raw[:MAX_LOGGED_LINE].decode(errors="replace").rstrip()
        if left_out:
            line += f" [... {left_out} more bytes of this line not logged]"
        if line:
            self._log.info("%s", line)

    def record(self) -> Recorded | None:
        if not self.running:
            return None
        assert self.process is not None
        return Recorded(self.name, self.process.pid, process_start_time(self.process.pid), self.argv)

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
                await asyncio.wait_for(exited(self.process), timeout)
            except ProcessLookupError:
                pass
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await exited(self.process)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.process is not None:
            _signal_group(self.process.pid, signal.SIGKILL)
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


class Children:
    """The hub's children as one: stale ones of a dead hub ended first, the
    live ones recorded in ``pidfile`` at every (re)start, stopped in reverse."""

    def __init__(self, processes: list[ChildProcess], pidfile: PidFile) -> None:
        self.processes = processes
        self.pidfile = pidfile

    async def start(self) -> None:
        await asyncio.to_thread(self.pidfile.clear_stale)
        await asyncio.to_thread(self.pidfile.write, [])
        for process in self.processes:
            process.on_spawn = self._record
            await process.start()

    async def _record(self) -> None:
        records = [r for r in (p.record() for p in self.processes) if r is not None]
        await asyncio.to_thread(self.pidfile.write, records)

    async def stop(self) -> None:
        for process in reversed(self.processes):
            await process.stop()
        await asyncio.to_thread(self.pidfile.write, [])

    @property
    def blocked(self) -> str | None:
        return next((f"{p.name}: {p.blocked}" for p in self.processes if p.blocked), None)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a server binds: a port in TIME_WAIT is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            return err.errno == errno.EADDRINUSE
    return False


def port_holder(port: int) -> str | None:
    """``pid N: command`` of the process listening on ``port`` (Linux, same user), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    return f"pid {entry.name}: {redact_command(command.strip())[:200]}"
    return None


async def exited(process: asyncio.subprocess.Process, poll: float = EXIT_POLL_SECONDS) -> int:
    """The exit status of ``process``, as soon as it has exited.

    Not ``process.wait()`` alone: asyncio (3.11 to 3.13 at least) returns
    from it only once the process's pipes are closed too, and a process
    outside its group (or output left unread) can hold them open for ever
    after it died, so a crashed child was never restarted. ``returncode``
    is set when the exit is reaped, pipes or not.
    """
    waiting = asyncio.ensure_future(process.wait())
    try:
        while process.returncode is None:
            await asyncio.wait({waiting}, timeout=poll)
    finally:
        waiting.cancel()
    return process.returncode


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
