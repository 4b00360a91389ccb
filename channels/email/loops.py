"""Mail written by a machine, and the brake on a runaway loop.

Two auto-responders answering each other forever is e-mail's classic
failure. The channel marks such mail ``InboundMessage.automated``: the hub
stores it and never answers it automatically (no bot turn, no
acknowledgement). It is marked when:

- its headers say so (``automated_reason``, after RFC 3834 and what the big
  mail systems send): ``Auto-Submitted`` other than ``no``; ``Precedence:
  bulk``, ``junk`` or ``list``; a ``List-Id`` or ``List-Unsubscribe``
  (mailing lists and newsletters); ``X-Autoreply``/``X-Autorespond`` and
  Microsoft's ``X-Auto-Response-Suppress`` set by an auto-reply; a sender
  (or an empty envelope sender, ``MAIL FROM:<>``) that is a mailer-daemon or
  postmaster;
- or one sender wrote more than ``HUB_EMAIL_SENDER_RATE`` messages within the
  last hour (``SenderRate``): a responder that puts none of those headers on
  its answers still stops getting answers after that many. The counter is in
  memory, per hub process: a restart forgets it, and with several hub
  instances each counts what it received. That is enough to break a loop
  (each side answers within seconds), not to meter anybody.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

HOUR = 3600.0
# Local parts of addresses that only machines write from.
MACHINE_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "noreply-dmarc-support"})


def machine_sender(address: str | None) -> bool:
    if not address:
        return False
    return address.rpartition("@")[0].lower() in MACHINE_SENDERS


def automated_reason(headers: Mapping[str, str], sender: str | None) -> str | None:
    """Why mail with ``headers`` (lower-cased names -> first value) from
    ``sender`` was written by a machine; None when nothing says so."""
    auto_submitted = headers.get("auto-submitted", "").strip().lower()
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto_submitted.split(';')[0].strip()[:40]}"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in ("list-id", "list-unsubscribe"):
        if headers.get(name, "").strip():
            return f"{name} present"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder"):
        if headers.get(name, "").strip():
            return f"{name} present"
    suppress = headers.get("x-auto-response-suppress", "").strip().lower()
    if suppress in ("all", "oof", "autoreply") or "oof" in suppress.split(","):
        return "X-Auto-Response-Suppress present"
    if machine_sender(sender):
        return "sent by a mailer-daemon or postmaster"
    return None


class SenderRate:
    """Messages per sender within the last hour, in memory (bounded)."""

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic, max_senders: int = 100_000) -> None:
        self.limit = limit
        self.clock = clock
        self.max_senders = max_senders
        self._seen: dict[str, deque[float]] = {}

    def exceeded(self, sender: str) -> bool:
        """Count one message from ``sender``; True when it is beyond the limit
        of the last hour (this one included)."""
        now = self.clock()
        times = self._seen.get(sender)
        if times is None:
            if len(self._seen) >= self.max_senders:
                self._forget(now)
            times = self._seen[sender] = deque()
        while times and now - times[0] >= HOUR:
            times.popleft()
        times.append(now)
        # Only the last limit + 1 times matter to the answer.
        while len(times) > self.limit + 1:
            times.popleft()
        return len(times) > self.limit

    def _forget(self, now: float) -> None:
        """Drop senders quiet for an hour; if that frees nothing, the oldest half."""
        for sender in [s for s, times in self._seen.items() if not times or now - times[-1] >= HOUR]:
            del self._seen[sender]
        if len(self._seen) >= self.max_senders:
            for sender in list(self._seen)[: self.max_senders // 2]:
                del self._seen[sender]
