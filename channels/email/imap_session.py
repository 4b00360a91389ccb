"""One IMAP connection for the poller: every command races the connection's loss.

aioimaplib never fails a pending command when the server goes away (it only
calls ``conn_lost_cb``), and some of its commands have no timeout: ``ImapSession``
puts both around every call. aioimaplib also drops what the server says
unasked while one of its "async" commands runs (``UID FETCH``, ``UID
STORE``...), such as ``* N EXISTS`` (new mail): ``ImapSession.announced``
records that. Also here: ``Backoff`` (exponential, with jitter), TCP
keepalive, and the muting of aioimaplib's protocol log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_EXISTS = re.compile(rb"^\* \d+ EXISTS\s*$", re.IGNORECASE)


class ImapError(Exception):
    """The server refused something or went away; the poller reconnects."""


class Backoff:
    """Exponential delays with jitter: each in [cap/2, cap], cap doubling from ``base`` to ``ceiling``."""

    def __init__(self, base: float, ceiling: float, rng: random.Random) -> None:
        self.base, self.ceiling, self.rng = base, ceiling, rng
        self.attempts = 0

    def next(self) -> float:
        cap = min(self.ceiling, self.base * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return self.rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.attempts = 0


class ImapSession:
    """One logged-in connection; every command races the connection's loss."""

    def __init__(self, client: Any, lost: asyncio.Future[None], timeout: float) -> None:
        self.client = client
        self.lost = lost
        self.timeout = timeout
        # Set when the server announces new mail (``* N EXISTS``), whichever
        # command's answer it came in (the poller clears it).
        self.announced = False
        protocol = client.protocol
        untagged = getattr(protocol, "_untagged_response", None)  # aioimaplib 2.x's, private
        if untagged is None:
            # Another aioimaplib: mail announced mid-sync waits for the next wake-up, as before.
            log.warning("aioimaplib has no _untagged_response: new-mail announcements during a sync are not seen")
            return

        def watched(line: bytes) -> Any:
            if _EXISTS.match(line):
                self.announced = True
            return untagged(line)

        protocol._untagged_response = watched

    async def call(self, awaitable: Awaitable[T], *, timeout: float | None = -1) -> T:
        limit = self.timeout if timeout == -1 else timeout
        task = asyncio.ensure_future(asyncio.wait_for(awaitable, limit) if limit else awaitable)
        racing: set[asyncio.Future[Any]] = {task, self.lost}
        try:
            done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task not in done:
            task.cancel()
            raise ImapError("the server closed the connection")
        return task.result()

    async def ok(self, what: str, awaitable: Awaitable[Any], *, timeout: float | None = -1) -> Any:
        response = await self.call(awaitable, timeout=timeout)
        if response.result != "OK":
            raise ImapError(f"{what} refused ({response.result})")
        return response

    async def close(self) -> None:
        client = self.client
        protocol = client.protocol
        if not self.lost.done() and protocol.state in ("AUTH", "SELECTED") and not client.has_pending_idle():
            with suppress(Exception):
                await asyncio.wait_for(self.call(client.logout()), 2.0)
        if protocol.transport is not None:
            protocol.transport.close()
        waiter = client._idle_waiter
        if waiter is not None:
            waiter.cancel()
        for task in (client._client_task, *client.tasks, *protocol.tasks):
            task.cancel()


class _ProtocolLogFilter(logging.Filter):
    """aioimaplib logs the raw protocol (addresses, subjects, bodies) below WARNING: drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def mute_protocol_log() -> None:
    library_log = logging.getLogger("aioimaplib.aioimaplib")
    if not any(isinstance(f, _ProtocolLogFilter) for f in library_log.filters):
        library_log.addFilter(_ProtocolLogFilter())


def keepalive(client: Any) -> None:
    """TCP keepalive, so a peer gone silently (NAT, power cut) is noticed within minutes, not at the next IDLE renewal."""
    sock = client.protocol.transport.get_extra_info("socket")
    if sock is None:
        return
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
