"""Inbound e-mail by IMAP: ``ImapPoller`` reads folders of an existing mailbox.

Contract (what the e-mail channel relies on):

- ``handle(raw)`` gets each message's bytes (``BODY.PEEK[]``: reading marks
  nothing read), one at a time and in UID order per folder. It MUST return
  only once the message is durably taken in (or deliberately dropped: a
  message it can never take in must not raise, or the folder waits for it
  forever), and raise on a transient failure: the poller then retries that
  message after a backoff and goes no further in that folder.
- The cursor (state key ``imap:<folder>``, value ``<UIDVALIDITY>:<last UID>``,
  one key so both change together) moves past a UID only after ``handle``
  returned for it (and the after-processing action ran), so a crash between
  the two re-delivers at most that one message: the hub drops it by
  Message-ID.
- On start and after every reconnect the poller takes in every UID above the
  cursor (the backfill after an outage); then it waits with IDLE when the
  server offers it (re-issued every ``idle_renew`` seconds, 29 minutes by
  default) and polls every ``poll_interval`` otherwise.
- A folder with no cursor yet (first start) is read from the mail of the
  last ``first_sync_days`` days (``None``: all of it).
- A changed UIDVALIDITY means the folder was recreated (or the mailbox moved
  to another server): its UIDs mean nothing any more. The poller then
  re-scans the whole folder (logged as a warning with the count) and relies
  on the hub's dedup on Message-ID to drop what it already has. That also
  holds for a conversation an agent deleted only as long as the hub keeps the
  Message-IDs of what it deletes (tombstones).
- Connection failures are retried with exponential backoff and jitter; no
  error leaves ``run`` but cancellation. Logs carry folder names, UIDs,
  counts and exception types, never addresses, subjects or mail text (and
  aioimaplib's own protocol log, which quotes all of it, is muted).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aioimaplib

from channels.email.imap_wire import (
    Selected,
    bye_pushed,
    exists_pushed,
    fetched_bodies,
    mailbox_arg,
    search_date,
    search_uids,
    select_info,
)
from hub.errors import ConfigError

if TYPE_CHECKING:
    from channels.base import ChannelHost
    from hub.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Handler = Callable[[bytes], Awaitable[None]]
IDLE_RENEW_SECONDS = 29 * 60.0


class StateStore(Protocol):
    """Where the poller keeps its cursors across restarts."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...


class HostState:
    """``StateStore`` on the hub's channel state (``ChannelHost.channel_state``), under one channel's name."""

    def __init__(self, host: ChannelHost, channel: str = "email") -> None:
        self.host = host
        self.channel = channel

    async def get(self, key: str) -> str | None:
        return await self.host.channel_state(self.channel, key)

    async def set(self, key: str, value: str) -> None:
        await self.host.set_channel_state(self.channel, key, value)


class ImapError(Exception):
    """The server refused something or went away; the poller reconnects."""


@dataclass(frozen=True, slots=True)
class AfterAction:
    """What happens to a message once taken in: nothing, ``seen`` (flag \\Seen) or ``move`` to ``folder``."""

    kind: str = "none"
    folder: str | None = None

    @classmethod
    def parse(cls, text: str) -> AfterAction:
        if text in ("none", "seen"):
            return cls(text)
        if text.startswith("move:") and text[5:].strip():
            return cls("move", text[5:].strip())
        raise ConfigError(f"HUB_EMAIL_IMAP_AFTER must be none, seen or move:<folder>, not {text!r}")


@dataclass(frozen=True)
class ImapConfig:
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    tls: str = "tls"  # tls | starttls | none
    folders: tuple[str, ...] = ("INBOX",)
    poll_interval: float = 60.0
    idle: bool = True
    after: AfterAction = AfterAction()
    first_sync_days: int | None = 7
    idle_renew: float = IDLE_RENEW_SECONDS
    timeout: float = 30.0
    reconnect_min: float = 1.0
    reconnect_max: float = 300.0
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ImapConfig:
        """The poller's configuration from ``HUB_EMAIL_IMAP_*``; ConfigError names every missing key."""
        password = settings.email_imap_password.get_secret_value() if settings.email_imap_password else ""
        missing = [
            f"HUB_EMAIL_IMAP_{key.upper()}"
            for key, value in (
                ("host", settings.email_imap_host),
                ("username", settings.email_imap_username),
                ("password", password),
            )
            if not value
        ]
        folders = tuple(name.strip() for name in settings.email_imap_folders.split(",") if name.strip())
        if not folders:
            missing.append("HUB_EMAIL_IMAP_FOLDERS")
        if missing:
            raise ConfigError(f"e-mail by IMAP needs {', '.join(missing)}")
        first = settings.email_imap_first_sync
        return cls(
            host=settings.email_imap_host or "",
            username=settings.email_imap_username or "",
            password=password,
            port=settings.email_imap_port,
            tls=settings.email_imap_tls,
            folders=folders,
            poll_interval=settings.email_imap_poll_interval,
            idle=settings.email_imap_idle,
            after=AfterAction.parse(settings.email_imap_after),
            first_sync_days=None if first == "all" else int(first),
        )


@dataclass
class FolderStatus:
    """What one folder's reader is doing (for health checks and tests)."""

    folder: str
    state: str = "starting"  # connecting | syncing | idle | polling | waiting (after a failure)
    uidvalidity: int | None = None
    last_uid: int | None = None
    connects: int = 0
    handled: int = 0
    handle_failures: int = 0
    rescans: int = 0


@dataclass
class _Cursor:
    uidvalidity: int
    last_uid: int

    @classmethod
    def load(cls, value: str | None) -> _Cursor | None:
        try:
            uidvalidity, last_uid = (value or "").split(":")
            return cls(int(uidvalidity), int(last_uid))
        except ValueError:
            return None

    def dump(self) -> str:
        return f"{self.uidvalidity}:{self.last_uid}"


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


class _Session:
    """One logged-in connection; every command races the connection's loss."""

    def __init__(self, client: Any, lost: asyncio.Future[None], timeout: float) -> None:
        self.client = client
        self.lost = lost
        self.timeout = timeout

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


def _mute_protocol_log() -> None:
    library_log = logging.getLogger("aioimaplib.aioimaplib")
    if not any(isinstance(f, _ProtocolLogFilter) for f in library_log.filters):
        library_log.addFilter(_ProtocolLogFilter())


def _keepalive(client: Any) -> None:
    """TCP keepalive, so a peer gone silently (NAT, power cut) is noticed within minutes, not at the next IDLE renewal."""
    sock = client.protocol.transport.get_extra_info("socket")
    if sock is None:
        return
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class ImapPoller:
    """Reads the configured folders into ``handle``, each over its own connection.

    ``await run()`` runs until cancelled (the channel keeps the task in its
    lifespan and cancels it at shutdown)."""

    def __init__(
        self,
        config: ImapConfig,
        handle: Handler,
        state: StateStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.handle = handle
        self.state = state
        self.clock = clock
        self.rng = rng or random.Random()
        self.status = {folder: FolderStatus(folder) for folder in config.folders}
        _mute_protocol_log()

    @staticmethod
    def state_key(folder: str) -> str:
        return f"imap:{folder}"

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for folder in self.config.folders:
                group.create_task(self._run_folder(folder), name=f"imap-{folder}")

    async def _run_folder(self, folder: str) -> None:
        status = self.status[folder]
        backoff = Backoff(self.config.reconnect_min, self.config.reconnect_max, self.rng)
        while True:
            status.state = "connecting"
            try:
                async with self._connect() as session:
                    status.connects += 1
                    await self._serve(session, folder, status, backoff)
            except (ImapError, OSError, TimeoutError, aioimaplib.AioImapException) as err:
                reason = str(err) if isinstance(err, ImapError) else type(err).__name__
                log.warning("imap %s: %s", folder, reason)
            except Exception as err:  # never let a surprise end the hub's reader
                log.error("imap %s: unexpected %s", folder, type(err).__name__)
            status.state = "waiting"
            delay = backoff.next()
            log.info("imap %s: reconnecting in %.1f s", folder, delay)
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[_Session]:
        config = self.config
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def on_lost(_exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(None)

        context = None
        if config.tls != "none":
            context = config.ssl_context or ssl.create_default_context()
        client = aioimaplib.IMAP4(
            host=config.host,
            port=config.port,
            timeout=config.timeout,
            conn_lost_cb=on_lost,
            ssl_context=context if config.tls == "tls" else None,
        )
        session = _Session(client, lost, config.timeout)
        try:
            await session.call(client.wait_hello_from_server())
            _keepalive(client)
            if config.tls == "starttls":
                assert context is not None
                await self._starttls(session, context)
            response = await session.call(client.login(config.username, config.password))
            if response.result != "OK":
                raise ImapError(f"login refused ({response.result}); check HUB_EMAIL_IMAP_USERNAME and _PASSWORD")
            yield session
        finally:
            await session.close()

    async def _starttls(self, session: _Session, context: ssl.SSLContext) -> None:
        protocol = session.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("the server offers no STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        await session.ok("STARTTLS", protocol.execute(command))
        loop = asyncio.get_running_loop()
        protocol.transport = await session.call(
            loop.start_tls(protocol.transport, protocol, context, server_hostname=self.config.host)
        )
        # Capabilities sent before TLS may have been forged (RFC 3501 6.2.1): ask again.
        await session.call(protocol.capability())

    async def _serve(self, session: _Session, folder: str, status: FolderStatus, backoff: Backoff) -> None:
        client = session.client
        after = self.config.after
        if after.kind == "move" and after.folder:
            # Create the destination when it is missing; NO means it exists (or the server says why in its log).
            await session.call(client.create(mailbox_arg(after.folder)))
        selected = select_info((await session.ok("SELECT", client.select(mailbox_arg(folder)))).lines)
        cursor = await self._cursor(session, folder, selected, status)
        idle = self.config.idle and client.has_capability("IDLE")
        log.info(
            "imap %s: connected to %s:%d, %d message(s), taking in UIDs above %d, then %s",
            folder,
            self.config.host,
            self.config.port,
            selected.exists,
            cursor.last_uid,
            "IDLE" if idle else f"polling every {self.config.poll_interval:g} s",
        )
        retry = Backoff(self.config.reconnect_min, self.config.reconnect_max, self.rng)
        while True:
            status.state = "syncing"
            complete = await self._sync(session, folder, cursor, status)
            backoff.reset()  # the connection works: the next outage starts from short delays again
            if complete:
                retry.reset()
            wait = None if complete else retry.next()
            if idle:
                await self._idle(session, status, wait or self.config.idle_renew)
            else:
                status.state = "polling"
                await session.call(asyncio.sleep(wait or self.config.poll_interval), timeout=None)

    async def _cursor(self, session: _Session, folder: str, selected: Selected, status: FolderStatus) -> _Cursor:
        key = self.state_key(folder)
        cursor = _Cursor.load(await self.state.get(key))
        if cursor is None:
            cursor = _Cursor(selected.uidvalidity, await self._first_sync_start(session, folder, selected))
        elif cursor.uidvalidity != selected.uidvalidity:
            log.warning(
                "imap %s: UIDVALIDITY changed from %d to %d (the folder was recreated): re-scanning all %d message(s);"
                " the hub drops those it already has by Message-ID",
                folder,
                cursor.uidvalidity,
                selected.uidvalidity,
                selected.exists,
            )
            status.rescans += 1
            cursor = _Cursor(selected.uidvalidity, 0)
        else:
            status.uidvalidity, status.last_uid = cursor.uidvalidity, cursor.last_uid
            return cursor
        await self.state.set(key, cursor.dump())
        status.uidvalidity, status.last_uid = cursor.uidvalidity, cursor.last_uid
        return cursor

    async def _first_sync_start(self, session: _Session, folder: str, selected: Selected) -> int:
        """The cursor of a folder read for the first time: before the oldest UID of the last N days."""
        days = self.config.first_sync_days
        if days is None:
            log.info("imap %s: first sync, taking in all %d message(s)", folder, selected.exists)
            return 0
        since = (self.clock() - timedelta(days=days)).date()
        recent = await self._search(session, "SINCE", search_date(since))
        if recent:
            start = recent[0] - 1
        elif selected.uidnext is not None:
            start = selected.uidnext - 1
        else:
            start = max(await self._search(session, "ALL"), default=0)
        log.info(
            "imap %s: first sync, taking in mail since %s (%d message(s)), not the %d before",
            folder,
            since.isoformat(),
            len(recent),
            selected.exists - len(recent),
        )
        return start

    async def _search(self, session: _Session, *criteria: str) -> list[int]:
        response = await session.ok("UID SEARCH", session.client.uid_search(*criteria, charset=None))
        return search_uids(response.lines)

    async def _sync(self, session: _Session, folder: str, cursor: _Cursor, status: FolderStatus) -> bool:
        """Take in every UID above the cursor, in order; False when ``handle`` failed (to be retried)."""
        # "N:*" always matches the highest UID, even below N: filter.
        uids = [uid for uid in await self._search(session, "UID", f"{cursor.last_uid + 1}:*") if uid > cursor.last_uid]
        if uids:
            log.info("imap %s: %d new message(s), UIDs %d to %d", folder, len(uids), uids[0], uids[-1])
        for uid in uids:
            response = await session.ok(
                "UID FETCH", session.client.uid("fetch", str(uid), "(UID BODY.PEEK[])"), timeout=None
            )
            raw = fetched_bodies(response.lines).get(uid)
            if raw is None:
                log.info("imap %s: UID %d was gone before it could be read", folder, uid)
            else:
                try:
                    await self.handle(raw)
                except Exception as err:
                    status.handle_failures += 1
                    log.warning(
                        "imap %s: UID %d not taken in (%s); retried later, the folder waits for it",
                        folder,
                        uid,
                        type(err).__name__,
                    )
                    return False
                await self._after(session, folder, uid)
                status.handled += 1
            cursor.last_uid = uid
            await self.state.set(self.state_key(folder), cursor.dump())
            status.last_uid = uid
        return True

    async def _after(self, session: _Session, folder: str, uid: int) -> None:
        after, client = self.config.after, session.client
        if after.kind == "none":
            return
        if after.kind == "seen":
            response = await session.call(client.uid("store", str(uid), "+FLAGS.SILENT (\\Seen)"))
        elif client.has_capability("MOVE"):
            response = await session.call(client.uid("move", str(uid), mailbox_arg(after.folder or "")))
        else:
            response = await session.call(client.uid("copy", str(uid), mailbox_arg(after.folder or "")))
            if response.result == "OK":
                response = await session.call(client.uid("store", str(uid), "+FLAGS.SILENT (\\Deleted)"))
            if response.result == "OK" and client.has_capability("UIDPLUS"):
                response = await session.call(client.uid("expunge", str(uid)))
        if response.result != "OK":
            # Taken in all the same: the cursor moves on, the message stays where it is.
            log.warning("imap %s: UID %d: %s refused (%s)", folder, uid, after.kind, response.result)

    async def _idle(self, session: _Session, status: FolderStatus, timeout: float) -> None:
        """IDLE until the server announces new mail or ``timeout`` passes (then DONE)."""
        client = session.client
        queue = client.protocol.idle_queue
        while not queue.empty():  # pushes of an earlier IDLE: the sync just done saw their mail
            queue.get_nowait()
        idle = await session.call(client.idle_start(timeout=timeout))
        status.state = "idle"
        while True:
            push = await session.call(client.wait_server_push(timeout=timeout + self.config.timeout), timeout=None)
            if bye_pushed(push):
                # Closing now lets a server that is shutting down go at once instead of waiting for us.
                raise ImapError("the server is closing the connection (BYE)")
            if push == aioimaplib.STOP_WAIT_SERVER_PUSH or exists_pushed(push):
                break
        client.idle_done()
        await session.ok("IDLE", idle)
