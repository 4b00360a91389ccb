"""Named places where a test may kill the hub, to prove what survives a crash.

``HUB_CRASH_AT=<name>`` makes the process SIGKILL itself when it reaches
``crash_point(<name>)``: no clean-up, no flush, as a power cut or the OOM
killer would. Unset (always, outside tests), a crash point is one dictionary
lookup. ``tests/hub/test_handoff_crash.py`` uses them.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("HUB_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
