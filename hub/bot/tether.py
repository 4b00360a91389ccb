"""Keeps a child process tied to the hub: run as ``python -I tether.py FD
GRACE -- COMMAND...`` by the supervisor, it starts COMMAND and, when the hub
dies (even by SIGKILL), ends COMMAND and everything it started.

How the hub's death is noticed: the hub holds the write end of a pipe and
the tether watches the read end (``FD``); the kernel closes the write end
when the hub process dies, however it dies, so the tether reads EOF. A pipe
and not ``PR_SET_PDEATHSIG`` on this link, because the death signal fires
when the *thread* that forked the child exits, not the process: the hub
forks from its event-loop thread, which is the main thread under ``hub
serve`` but need not be elsewhere (tests run hubs in other threads). The
pipe also works on macOS.

Why a tether process at all, rather than a death signal set in the child
before exec: Rasa and the action server are Sanic apps that may start
workers of their own; a signal to the direct child leaves those orphaned on
the ports. The tether runs in its own session (the supervisor starts it
with ``start_new_session``), COMMAND stays in that process group, and on EOF
the tether sends SIGTERM to the whole group, waits GRACE seconds, then
SIGKILL to the group (itself included): the normal escalation, done here
because the hub is no longer there to do it.

COMMAND itself gets ``PR_SET_PDEATHSIG`` = SIGKILL on Linux (set in the
tether's single thread before exec, so the thread caveat does not apply):
if the tether alone is killed, COMMAND does not outlive it. Elsewhere that
step is a no-op and the pipe does the work.

Signals: the supervisor stops a child with SIGTERM to the group, so the
tether gets it too; it then only waits for COMMAND to exit and exits with
its status (a crash restarts through the supervisor as before).

Standard library only, and run with ``-I``: it must start from any
interpreter and environment (Rasa's venv variables must not confuse it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def death_signal_setter(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A function that asks Linux to send ``sig`` to the calling process when
    its parent dies; elsewhere a no-op. libc is loaded now, not in the forked
    child, where only the prctl call is left to do."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def set_death_signal() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")

    return set_death_signal


def _signal_group(sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgrp(), sig)


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run(hub_fd: int, grace: float, command: list[str]) -> int:
    # A handler, not SIG_IGN: an ignored SIGTERM would be inherited across exec.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    parent = os.getpid()
    set_death_signal = death_signal_setter(signal.SIGKILL)

    def before_exec() -> None:
        set_death_signal()
        if os.getppid() != parent:  # the tether died before prctl took effect
            os._exit(1)

    child = subprocess.Popen(command, preexec_fn=before_exec)  # close_fds: the pipe stays here
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(child.pid)  # Linux 5.3+: readable when the child exits
    watched = [hub_fd] + ([pidfd] if pidfd is not None else [])
    while True:
        try:
            readable, _, _ = select.select(watched, [], [], 1.0 if pidfd is None else None)
        except InterruptedError:
            readable = []
        if hub_fd in readable and not os.read(hub_fd, 64):
            break  # EOF: the hub is gone
        if child.poll() is not None:
            return _exit_status(child.returncode)
    # The hub died: its normal escalation, for the whole group.
    _signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(signal.SIGKILL)  # workers that outlived COMMAND, then the tether itself
    return _exit_status(child.returncode if child.returncode is not None else -signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: tether.py FD GRACE -- COMMAND...", file=sys.stderr)
        return 2
    return run(int(argv[0]), float(argv[1]), argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
