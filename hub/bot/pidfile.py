"""What the hub started, written down so that the next hub can clean up.

``data_dir/run/children.json`` holds the hub's own pid and start time and,
for each supervised child, its pid (the leader of the child's process
group), its start time and its command line. A hub killed outright leaves
the file behind; the next hub, before starting its own children, ends every
recorded process group whose leader is still alive *with the recorded start
time* (SIGTERM, a grace, SIGKILL). The start time (field 22 of
``/proc/<pid>/stat``, clock ticks since boot) is what makes this safe: a pid
the kernel has since given to an unrelated process has another start time
and is left alone. Without ``/proc`` (macOS) nothing can be verified, so
nothing is killed; the tether (hub/bot/tether.py) still ends the children
when their hub dies, and the port check reports any survivor.

When the recorded hub is itself still alive (two hubs sharing a data
directory), its children are its business: they are left alone.

The functions here block (sleeps, file I/O); the hub calls them in a thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.logs import redact_command

log = logging.getLogger(__name__)


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when it is gone
    (a zombie counts as gone) or cannot be known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    try:
        return None if fields[0] == "Z" else int(fields[19])  # fields[0] is field 3 (state); [19] is 22
    except (IndexError, ValueError):
        return None


def verifiable() -> bool:
    return Path(f"/proc/{os.getpid()}/stat").exists()


@dataclass(frozen=True, slots=True)
class Recorded:
    name: str
    pid: int
    start_time: int | None
    argv: list[str]

    def alive(self) -> bool:
        """Still the very process that was recorded (not a recycled pid)."""
        return self.start_time is not None and process_start_time(self.pid) == self.start_time


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[Recorded | None, list[Recorded]]:
        """The recorded hub and its children; nothing when the file is missing or unreadable."""
        try:
            data = json.loads(self.path.read_text())
            owner = Recorded(**data["hub"]) if data.get("hub") else None
            return owner, [Recorded(**child) for child in data.get("children", [])]
        except FileNotFoundError:
            return None, []
        except (OSError, ValueError, TypeError, KeyError) as err:
            log.warning("ignoring unreadable %s: %r", self.path, err)
            return None, []

    def clear_stale(self, grace: float = 5.0) -> list[Recorded]:
        """End the recorded children of a dead hub; returns the ones ended."""
        owner, children = self.read()
        if not children:
            return []
        if not verifiable():
            log.warning(
                "cannot verify the children recorded in %s on this platform (no /proc); "
                "if an earlier hub's Rasa survived, stop it by hand: %s",
                self.path,
                ", ".join(f"{child.name} pid {child.pid}" for child in children),
            )
            return []
        if owner is not None and owner.pid != os.getpid() and owner.alive():
            log.warning(
                "%s belongs to a hub that is still running (pid %s); leaving its children alone", self.path, owner.pid
            )
            return []
        stale = [child for child in children if child.alive()]
        for child in children:
            if child in stale:
                continue
            if orphaned_group(child.pid):
                log.warning("ending what is left of %s's process group %s (its leader is gone)", child.name, child.pid)
                _signal_group(child.pid, signal.SIGKILL, leader_too=False)
            else:
                log.debug("recorded %s (pid %s) is gone or its pid was reused; left alone", child.name, child.pid)
        for child in stale:
            log.warning(
                "ending %s left running by an earlier hub (pid %s): %s",
                child.name,
                child.pid,
                redact_command(child.argv),
            )
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(child.alive() for child in stale) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in stale:
            # The leader, and any worker that outlived it (the group id stays
            # taken while a member lives, so it cannot name a stranger's group).
            _signal_group(child.pid, signal.SIGKILL, leader_too=child.alive())
        return stale

    def write(self, children: list[Recorded]) -> None:
        """Record this hub and ``children`` (atomically: a reader never sees half a file)."""
        me = Recorded("hub", os.getpid(), process_start_time(os.getpid()), [])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"hub": asdict(me), "children": [asdict(c) for c in children]}, indent=2))
        temporary.replace(self.path)


def orphaned_group(pgid: int) -> bool:
    """Members of process group ``pgid`` live on while no process ``pgid`` exists.

    Then they are what is left of the recorded group, never a stranger's: a
    group id is not reused while a member lives, and a new group takes the
    id of the live process that creates it."""
    if Path(f"/proc/{pgid}").exists():
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pid: int, sig: int, *, leader_too: bool = True) -> None:
    # Children lead their own process group (start_new_session), so pgid == pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
        return
    if leader_too:  # only for a pid verified by its start time a moment ago
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
