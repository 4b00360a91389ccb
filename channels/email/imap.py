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
- With ``leases`` (several hub instances reading one mailbox), a folder is
  read only by the instance holding its lease (``imap:<user>@<host>:<port>/<folder>``):
  the others wait in ``standby`` and ask again every third of the lease; the
  reader renews it as often, and stops reading the moment it is lost. A
  stopping reader releases it, so another instance takes over at its next
  ask; a dead one's lease expires. The cursor is shared (the hub's channel
  state), so the new reader goes on where the old one stopped.
- Connection failures are retried with exponential backoff and jitter; no
  error leaves ``run`` but cancellation. Logs carry folder names, UIDs,
  counts and exception types, never addresses, subjects or mail text (and
  aioimaplib's own protocol log, which quotes all of it, is muted).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import aioimaplib

from channels.email.imap_config import IDLE_RENEW_SECONDS, AfterAction, ImapConfig
from channels.email.imap_session import Backoff, ImapError, ImapSession, keepalive, mute_protocol_log
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

if TYPE_CHECKING:
    from channels.base import ChannelHost

__all__ = [
    "IDLE_RENEW_SECONDS",
    "AfterAction",
    "FolderStatus",
    "HostLeases",
    "HostState",
    "ImapConfig",
    "ImapError",
    "ImapPoller",
    "Leases",
]

log = logging.getLogger(__name__)
Handler = Callable[[bytes], Awaitable[None]]


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


class Leases(Protocol):
    """Leases by name for this hub instance (the channel backs it with ``ChannelHost.hold_lease``)."""

    @property
    def seconds(self) -> float: ...

    async def hold(self, name: str) -> bool: ...

    async def release(self, name: str) -> None: ...


class HostLeases:
    """``Leases`` on the hub's ``ChannelHost``."""

    def __init__(self, host: ChannelHost) -> None:
        self.host = host

    @property
    def seconds(self) -> float:
        return self.host.lease_seconds

    async def hold(self, name: str) -> bool:
        return await self.host.hold_lease(name)

    async def release(self, name: str) -> None:
        await self.host.release_lease(name)


@dataclass
class FolderStatus:
    """What one folder's reader is doing (for health checks and tests)."""

    folder: str
    # connecting | syncing | idle | polling | waiting (after a failure) | standby (another instance reads it)
    state: str = "starting"
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
        leases: Leases | None = None,
    ) -> None:
        self.config = config
        self.handle = handle
        self.state = state
        self.leases = leases
        self.clock = clock
        self.rng = rng or random.Random()
        self.status = {folder: FolderStatus(folder) for folder in config.folders}
        mute_protocol_log()

    @staticmethod
    def state_key(folder: str) -> str:
        return f"imap:{folder}"

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for folder in self.config.folders:
                group.create_task(self._run_folder(folder), name=f"imap-{folder}")

    def lease_name(self, folder: str) -> str:
        config = self.config
        return f"imap:{config.username}@{config.host}:{config.port}/{folder}"[:200]

    async def _run_folder(self, folder: str) -> None:
        try:
            await self._read_folder(folder)
        finally:
            if self.leases is not None:
                try:
                    await self.leases.release(self.lease_name(folder))
                except Exception as err:
                    log.warning("imap %s: could not release the lease (%s); it expires", folder, type(err).__name__)

    async def _read_folder(self, folder: str) -> None:
        status = self.status[folder]
        backoff = Backoff(self.config.reconnect_min, self.config.reconnect_max, self.rng)
        while True:
            if self.leases is not None and not await self._lead(folder, status):
                continue
            status.state = "connecting"
            try:
                async with self._connect() as session:
                    status.connects += 1
                    await self._serve_leased(session, folder, status, backoff)
            except (ImapError, OSError, TimeoutError, aioimaplib.AioImapException) as err:
                if isinstance(err, ImapError):
                    reason = str(err)
                elif isinstance(err, TimeoutError):
                    reason = f"no answer within {self.config.timeout:g} s (TimeoutError)"
                else:
                    reason = f"connection failed ({type(err).__name__})"
                log.warning("imap %s: %s", folder, reason)
            except Exception as err:  # never let a surprise end the hub's reader
                log.error("imap %s: unexpected %s", folder, type(err).__name__)
            status.state = "waiting"
            delay = backoff.next()
            log.info("imap %s: reconnecting in %.1f s", folder, delay)
            await asyncio.sleep(delay)

    def _renew_every(self) -> float:
        assert self.leases is not None
        return max(0.05, min(self.leases.seconds / 3, 60.0))

    async def _lead(self, folder: str, status: FolderStatus) -> bool:
        """Take the folder's lease, or wait a while (another instance reads it)."""
        assert self.leases is not None
        try:
            if await self.leases.hold(self.lease_name(folder)):
                log.info("imap %s: this instance reads it", folder)
                return True
        except Exception as err:  # the database is away: nobody may read, try again
            log.warning("imap %s: cannot take the lease (%s)", folder, type(err).__name__)
        status.state = "standby"
        await asyncio.sleep(self._renew_every())
        return False

    async def _keep_lease(self, folder: str) -> None:
        """Renew the folder's lease; returns when it is lost (or cannot be renewed)."""
        assert self.leases is not None
        while True:
            await asyncio.sleep(self._renew_every())
            try:
                if not await self.leases.hold(self.lease_name(folder)):
                    return
            except Exception as err:
                log.warning("imap %s: cannot renew the lease (%s)", folder, type(err).__name__)
                return

    async def _serve_leased(self, session: ImapSession, folder: str, status: FolderStatus, backoff: Backoff) -> None:
        """``_serve`` while the lease is ours; it stops when the lease is lost."""
        if self.leases is None:
            await self._serve(session, folder, status, backoff)
            return
        serving = asyncio.ensure_future(self._serve(session, folder, status, backoff))
        keeping = asyncio.ensure_future(self._keep_lease(folder))
        try:
            await asyncio.wait({serving, keeping}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()  # its error goes to the reconnect loop
        finally:
            for task in (serving, keeping):
                task.cancel()
            await asyncio.gather(serving, keeping, return_exceptions=True)
        log.warning("imap %s: the lease went to another instance; it reads the folder now", folder)

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[ImapSession]:
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
        session = ImapSession(client, lost, config.timeout)
        try:
            await session.call(client.wait_hello_from_server())
            keepalive(client)
            if config.tls == "starttls":
                assert context is not None
                await self._starttls(session, context)
            response = await session.call(client.login(config.username, config.password))
            if response.result != "OK":
                raise ImapError(f"login refused ({response.result}); check HUB_EMAIL_IMAP_USERNAME and _PASSWORD")
            yield session
        finally:
            await session.close()

    async def _starttls(self, session: ImapSession, context: ssl.SSLContext) -> None:
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

    async def _serve(self, session: ImapSession, folder: str, status: FolderStatus, backoff: Backoff) -> None:
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

    async def _cursor(self, session: ImapSession, folder: str, selected: Selected, status: FolderStatus) -> _Cursor:
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

    async def _first_sync_start(self, session: ImapSession, folder: str, selected: Selected) -> int:
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

    async def _search(self, session: ImapSession, *criteria: str) -> list[int]:
        response = await session.ok("UID SEARCH", session.client.uid_search(*criteria, charset=None))
        return search_uids(response.lines)

    async def _sync(self, session: ImapSession, folder: str, cursor: _Cursor, status: FolderStatus) -> bool:
        """Take in every UID above the cursor, in order; False when ``handle`` failed (to be retried).

        Mail that arrives meanwhile is announced (``N EXISTS``) in the answer
        to one of these commands, and never again (not in the IDLE after): so
        the poller looks once more whenever that happened."""
        while True:
            session.announced = False
            if not await self._sync_once(session, folder, cursor, status):
                return False
            if not session.announced:
                return True

    async def _sync_once(self, session: ImapSession, folder: str, cursor: _Cursor, status: FolderStatus) -> bool:
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

    async def _after(self, session: ImapSession, folder: str, uid: int) -> None:
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

    async def _idle(self, session: ImapSession, status: FolderStatus, timeout: float) -> None:
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
