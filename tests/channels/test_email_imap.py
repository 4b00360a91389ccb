"""The IMAP poller against a real dovecot on loopback (tests/fakes/dovecot.py).

IDLE delivery, restart without re-import, a UIDVALIDITY change (re-scan,
logged), backfill after an outage, a transient ``handle`` failure retried
without skipping, the after-processing actions, polling, the first-sync
window, TLS and STARTTLS, a refused login, and logs free of addresses and
mail text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from typing import Any

import pytest

from channels.email.imap import AfterAction, ImapConfig, ImapPoller
from tests.conftest import wait_for
from tests.fakes.dovecot import DOVECOT, PASSWORD, USER, Dovecot, message

pytestmark = [
    pytest.mark.skipif(DOVECOT is None, reason="dovecot is not installed (make test installs dovecot-imapd)"),
    pytest.mark.asyncio,
]


class MemoryState:
    """The poller's state interface over a dict (the channel backs it with ChannelHost.channel_state)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value
        self.writes.append((key, value))


class Inbox:
    """A ``handle`` that keeps what it was given; ``fail[n]`` makes message n fail that many more times."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.attempts: list[int] = []
        self.fail: dict[int, int] = {}
        self.on_fail: list[Any] = []

    async def __call__(self, raw: bytes) -> None:
        match = re.search(rb"Body of message (\d+)", raw)
        assert match, raw[:200]
        number = int(match.group(1))
        self.attempts.append(number)
        if self.fail.get(number):
            self.fail[number] -= 1
            for check in self.on_fail:
                check(number)
            raise RuntimeError("the database is away")
        self.received.append(number)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def imap_config(server: Dovecot, **overrides: Any) -> ImapConfig:
    config = ImapConfig(
        host="127.0.0.1",
        port=server.port,
        tls="none",
        username=USER,
        password=PASSWORD,
        first_sync_days=None,
        poll_interval=0.2,
        timeout=5.0,
        reconnect_min=0.05,
        reconnect_max=0.3,
    )
    return replace(config, **overrides)


@asynccontextmanager
async def running(poller: ImapPoller) -> AsyncIterator[ImapPoller]:
    task = asyncio.create_task(poller.run())
    try:
        yield poller
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def settled(poller: ImapPoller, folder: str = "INBOX", state: str = "idle") -> None:
    await wait_for(lambda: poller.status[folder].state == state, timeout=10)


async def test_imap_idle_delivers_mail_appended_while_idling_and_marks_nothing_read(dovecot: Dovecot) -> None:
    inbox, state = Inbox(), MemoryState()
    before = set(asyncio.all_tasks())
    async with running(ImapPoller(imap_config(dovecot), inbox, state)) as poller:
        await settled(poller)
        started = time.monotonic()
        await dovecot.append(message(1))
        await wait_for(lambda: inbox.received == [1], timeout=5)
        assert time.monotonic() - started < 3
        await settled(poller)  # back in IDLE for the next one
        await dovecot.append(message(2))
        await wait_for(lambda: inbox.received == [1, 2], timeout=5)
        assert poller.status["INBOX"].connects == 1
    # BODY.PEEK[]: with the default after-action nothing is flagged \Seen.
    assert await dovecot.uids(criteria="SEEN") == []
    validity = await dovecot.uidvalidity()
    assert state.values == {"imap:INBOX": f"{validity}:2"}
    # The poller leaves no task behind (aioimaplib's included).
    await asyncio.sleep(0)
    assert {task for task in asyncio.all_tasks() if not task.done()} - before <= {asyncio.current_task()}


async def test_imap_mail_announced_while_syncing_is_taken_in_without_waiting_for_more(dovecot: Dovecot) -> None:
    """Mail that arrives while the poller syncs is announced (``* N EXISTS``) in
    the answer to one of its commands, not in IDLE after: the poller looks
    again before it idles, or that mail waits for the next one (or the IDLE
    renewal, 29 minutes)."""
    await dovecot.append(message(1))
    await dovecot.append(message(2))
    inbox = Inbox()
    taking_in = inbox.__call__

    async def handle(raw: bytes) -> None:
        await taking_in(raw)
        if inbox.received == [1]:  # during the sync of 1 and 2: the FETCH of 2 announces it
            await dovecot.append(message(3))

    async with running(ImapPoller(imap_config(dovecot), handle, MemoryState())) as poller:
        await wait_for(lambda: inbox.received == [1, 2, 3], timeout=10)
        assert poller.status["INBOX"].connects == 1


async def test_imap_idle_is_renewed_and_keeps_delivering(dovecot: Dovecot) -> None:
    inbox = Inbox()
    async with running(ImapPoller(imap_config(dovecot, idle_renew=0.5), inbox, MemoryState())) as poller:
        await settled(poller)
        await asyncio.sleep(1.6)  # three IDLE commands later
        await dovecot.append(message(1))
        await wait_for(lambda: inbox.received == [1], timeout=5)
        assert poller.status["INBOX"].connects == 1  # renewing IDLE is not reconnecting


async def test_imap_restart_takes_in_only_new_mail(dovecot: Dovecot) -> None:
    state = MemoryState()
    for number in (1, 2, 3):
        await dovecot.append(message(number))
    first = Inbox()
    async with running(ImapPoller(imap_config(dovecot), first, state)) as poller:
        await wait_for(lambda: first.received == [1, 2, 3])
        await settled(poller)
    await dovecot.append(message(4))
    second = Inbox()
    async with running(ImapPoller(imap_config(dovecot), second, state)) as poller:
        await wait_for(lambda: second.received == [4])
        await settled(poller)
        await asyncio.sleep(0.3)
    assert second.attempts == [4]
    # A third start with nothing new takes in nothing.
    third = Inbox()
    async with running(ImapPoller(imap_config(dovecot), third, state)) as poller:
        await settled(poller)
    assert third.attempts == []


async def test_imap_uidvalidity_change_rescans_the_folder_and_says_so(
    dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="channels.email.imap")
    await dovecot.create("Support")
    state, config = MemoryState(), imap_config(dovecot, folders=("Support",))
    first = Inbox()
    for number in (1, 2):
        await dovecot.append(message(number), "Support")
    async with running(ImapPoller(config, first, state)) as poller:
        await wait_for(lambda: first.received == [1, 2])
        old_validity = poller.status["Support"].uidvalidity
        # The folder is recreated under the running poller (a migration, a client that rebuilt it).
        # dovecot keeps serving the open session from its stale index (it logs the confusion):
        # the poller learns of the new folder on its next connection, here after a server restart.
        await dovecot.delete("Support")
        await dovecot.create("Support")
        for number in (1, 2, 3):
            await dovecot.append(message(number), "Support")
        await asyncio.to_thread(dovecot.stop)
        await asyncio.to_thread(dovecot.start)
        await wait_for(lambda: first.received == [1, 2, 1, 2, 3], timeout=10)
        assert poller.status["Support"].rescans == 1
    new_validity = await dovecot.uidvalidity("Support")
    assert new_validity != old_validity
    assert state.values["imap:Support"] == f"{new_validity}:3"
    assert f"UIDVALIDITY changed from {old_validity} to {new_validity}" in caplog.text
    assert "re-scanning all 3 message(s)" in caplog.text


async def test_imap_uidvalidity_change_while_stopped(dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="channels.email.imap")
    await dovecot.create("Support")
    await dovecot.append(message(1), "Support")
    state, config = MemoryState(), imap_config(dovecot, folders=("Support",))
    first = Inbox()
    async with running(ImapPoller(config, first, state)) as poller:
        await wait_for(lambda: first.received == [1])
        await settled(poller, "Support")
    await dovecot.delete("Support")
    await dovecot.create("Support")
    await dovecot.append(message(1), "Support")
    await dovecot.append(message(2), "Support")
    second = Inbox()
    async with running(ImapPoller(config, second, state)) as poller:
        # Everything again, for the hub's dedup on Message-ID to sort out.
        await wait_for(lambda: second.received == [1, 2])
    assert "UIDVALIDITY changed" in caplog.text


async def test_imap_backfills_after_the_server_was_down(dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="channels.email.imap")
    inbox = Inbox()
    await dovecot.append(message(1))
    async with running(ImapPoller(imap_config(dovecot), inbox, MemoryState())) as poller:
        await wait_for(lambda: inbox.received == [1])
        await settled(poller)
        await asyncio.to_thread(dovecot.stop)
        await wait_for(lambda: poller.status["INBOX"].state in ("waiting", "connecting"))
        # Mail the MTA delivered while the IMAP server was down.
        for number in (2, 3, 4):
            dovecot.deliver_offline(message(number))
        await asyncio.sleep(0.5)  # a few refused reconnects
        await asyncio.to_thread(dovecot.start)
        await wait_for(lambda: len(inbox.received) == 4, timeout=10)
        await settled(poller)
        assert poller.status["INBOX"].connects == 2
    # Exactly the new mail, once each, in the server's UID order.
    assert inbox.received == [1, *(await dovecot.numbers())[1:]]
    assert sorted(inbox.received) == [1, 2, 3, 4]
    assert "reconnecting in" in caplog.text


async def test_imap_transient_handle_failure_is_retried_and_the_cursor_waits(dovecot: Dovecot) -> None:
    inbox, state = Inbox(), MemoryState()
    inbox.fail[2] = 2
    validity = await dovecot.uidvalidity()
    cursors: list[str | None] = []
    inbox.on_fail.append(lambda _number: cursors.append(state.values.get("imap:INBOX")))
    for number in (1, 2, 3):
        await dovecot.append(message(number))
    async with running(ImapPoller(imap_config(dovecot), inbox, state)) as poller:
        await wait_for(lambda: inbox.received == [1, 2, 3], timeout=10)
        assert poller.status["INBOX"].handle_failures == 2
        assert poller.status["INBOX"].connects == 1  # a failing handler is not a broken connection
    assert inbox.attempts == [1, 2, 2, 2, 3]
    assert cursors == [f"{validity}:1", f"{validity}:1"]
    assert [value for _, value in state.writes] == [f"{validity}:0", f"{validity}:1", f"{validity}:2", f"{validity}:3"]


async def test_imap_after_processing_flags_seen(dovecot: Dovecot) -> None:
    inbox = Inbox()
    await dovecot.append(message(1))
    async with running(ImapPoller(imap_config(dovecot, after=AfterAction("seen")), inbox, MemoryState())):
        await wait_for(lambda: inbox.received == [1])

        async def flagged() -> bool:
            return await dovecot.uids(criteria="SEEN") == [1]

        await wait_for(flagged)
    assert await dovecot.uids(criteria="UNSEEN") == []


async def test_imap_after_processing_moves_to_a_folder_it_creates(dovecot: Dovecot) -> None:
    inbox = Inbox()
    for number in (1, 2):
        await dovecot.append(message(number))
    # A name to quote, with "&" and non-ASCII (modified UTF-7 on the wire, written out here by hand).
    config = imap_config(dovecot, after=AfterAction.parse("move:Taken in & Traité"))
    async with running(ImapPoller(config, inbox, MemoryState())) as poller:
        await wait_for(lambda: inbox.received == [1, 2])
        await settled(poller)
    assert await dovecot.uids() == []
    assert await dovecot.numbers("Taken in &- Trait&AOk-") == [1, 2]


@pytest.mark.parametrize("how", ["server without IDLE", "IDLE turned off"])
async def test_imap_polls_when_idle_is_not_used(how: str) -> None:
    server = Dovecot(capabilities="IMAP4rev1 LITERAL+ UIDPLUS MOVE" if how == "server without IDLE" else None)
    server.start()
    try:
        inbox = Inbox()
        config = imap_config(server, idle=how != "IDLE turned off", poll_interval=0.3)
        async with running(ImapPoller(config, inbox, MemoryState())) as poller:
            await settled(poller, state="polling")
            await server.append(message(1))
            await wait_for(lambda: inbox.received == [1], timeout=3)
            await server.append(message(2))
            await wait_for(lambda: inbox.received == [1, 2], timeout=3)
            assert poller.status["INBOX"].state in ("polling", "syncing")
    finally:
        server.cleanup()


async def test_imap_first_sync_takes_in_only_recent_mail(dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="channels.email.imap")
    await dovecot.append(message(1), date=time.time() - 30 * 86400)
    await dovecot.append(message(2), date=time.time() - 2 * 86400)
    await dovecot.append(message(3))
    inbox = Inbox()
    async with running(ImapPoller(imap_config(dovecot, first_sync_days=7), inbox, MemoryState())) as poller:
        await wait_for(lambda: inbox.received == [2, 3])
        await settled(poller)
    assert inbox.attempts == [2, 3]
    assert "not the 1 before" in caplog.text


async def test_imap_first_sync_of_old_mail_only_starts_after_it(dovecot: Dovecot) -> None:
    await dovecot.append(message(1), date=time.time() - 30 * 86400)
    inbox = Inbox()
    async with running(ImapPoller(imap_config(dovecot, first_sync_days=7), inbox, MemoryState())) as poller:
        await settled(poller)
        await dovecot.append(message(2))
        await wait_for(lambda: inbox.received == [2])
    assert inbox.attempts == [2]


@pytest.mark.parametrize("mode", ["tls", "starttls"])
async def test_imap_over_tls_and_starttls(mode: str) -> None:
    server = Dovecot(tls=True)
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(server.cafile))
        port = server.tls_port if mode == "tls" else server.port
        assert port is not None
        inbox = Inbox()
        config = imap_config(server, tls=mode, port=port, ssl_context=context)
        async with running(ImapPoller(config, inbox, MemoryState())) as poller:
            await settled(poller)
            await server.append(message(1))
            await wait_for(lambda: inbox.received == [1])
        assert "TLS" in server.log()
    finally:
        server.cleanup()


async def test_imap_refused_login_is_retried_and_never_raises(
    dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    poller = ImapPoller(imap_config(dovecot, password="wrong-password"), Inbox(), MemoryState())
    async with running(poller):
        # dovecot answers NO, then (its penalty for repeated failures) answers late: both are retried.
        await wait_for(lambda: caplog.text.count("reconnecting in") >= 2, timeout=15)
        assert poller.status["INBOX"].connects == 0
    assert "login refused (NO)" in caplog.text
    assert "wrong-password" not in caplog.text


async def test_imap_logs_hold_no_addresses_or_mail_text(dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    await dovecot.append(message(1, sender="secret.customer@example.org", subject="My private order"))
    config = imap_config(dovecot, after=AfterAction("seen"))
    async with running(ImapPoller(config, inbox, MemoryState())) as poller:
        await wait_for(lambda: inbox.received == [1])
        await settled(poller)
        await dovecot.append(message(2, sender="secret.customer@example.org", subject="My private order"))
        await wait_for(lambda: inbox.received == [1, 2])
    assert "1 new message(s)" in caplog.text
    for private in ("secret.customer", "private order", "Body of message", USER, PASSWORD):
        assert private not in caplog.text


async def test_imap_reads_several_folders_each_with_its_own_cursor(dovecot: Dovecot) -> None:
    await dovecot.create("Support")
    await dovecot.append(message(1))
    await dovecot.append(message(2), "Support")
    inbox, state = Inbox(), MemoryState()
    async with running(ImapPoller(imap_config(dovecot, folders=("INBOX", "Support")), inbox, state)) as poller:
        await wait_for(lambda: sorted(inbox.received) == [1, 2])
        await settled(poller, "INBOX")
        await settled(poller, "Support")
        await dovecot.append(message(3), "Support")
        await dovecot.append(message(4))
        await wait_for(lambda: sorted(inbox.received) == [1, 2, 3, 4])
    inbox_validity, support_validity = await dovecot.uidvalidity(), await dovecot.uidvalidity("Support")
    assert state.values == {"imap:INBOX": f"{inbox_validity}:2", "imap:Support": f"{support_validity}:2"}


async def test_imap_hung_server_is_left_and_rejoined(dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="channels.email.imap")
    inbox = Inbox()
    config = imap_config(dovecot, idle_renew=0.5, timeout=1.0)
    async with running(ImapPoller(config, inbox, MemoryState())) as poller:
        await settled(poller)
        dovecot.pause()
        try:
            # The IDLE renewal gets no answer: the poller gives up on the connection and retries.
            await wait_for(lambda: poller.status["INBOX"].state in ("waiting", "connecting"), timeout=5)
            await asyncio.sleep(1.5)
        finally:
            dovecot.resume()
        await dovecot.append(message(1))
        await wait_for(lambda: inbox.received == [1], timeout=10)
        assert poller.status["INBOX"].connects >= 2
    assert "TimeoutError" in caplog.text


async def test_two_instances_read_a_folder_once_and_one_takes_over_when_the_other_stops(
    dovecot: Dovecot, sqlite_url: str
) -> None:
    """Two hub instances' pollers on one mailbox, with leases in the hub's
    database (hub/leases.py) and the shared cursor: one reads; when it stops,
    the other goes on from the cursor, and no mail is taken in twice."""
    from hub.events import utcnow
    from hub.leases import NamedLeases, holder_of
    from hub.storage import open_database

    db = open_database(sqlite_url)
    state = MemoryState()  # the hub's channel state, shared by the instances
    inboxes = {"a": Inbox(), "b": Inbox()}
    pollers = {
        name: ImapPoller(
            imap_config(dovecot),
            inboxes[name],
            state,
            leases=NamedLeases(db, holder=name, seconds=0.6, now=utcnow),
        )
        for name in ("a", "b")
    }
    tasks = {name: asyncio.create_task(poller.run()) for name, poller in pollers.items()}
    try:
        leader = await wait_for(lambda: db.read(holder_of, pollers["a"].lease_name("INBOX"), now=utcnow()))
        other = "b" if leader == "a" else "a"
        await settled(pollers[leader])
        await settled(pollers[other], state="standby")
        await dovecot.append(message(1))
        await wait_for(lambda: inboxes[leader].received == [1], timeout=5)
        await asyncio.sleep(1.0)  # several renewals: the leader keeps it, the other keeps waiting
        assert inboxes[other].received == [] and pollers[other].status["INBOX"].connects == 0
        # The leader stops (its hub shuts down): it releases the lease and the other reads on from the cursor.
        tasks[leader].cancel()
        with suppress(asyncio.CancelledError):
            await tasks[leader]
        await settled(pollers[other])
        await dovecot.append(message(2))
        await wait_for(lambda: inboxes[other].received == [2], timeout=5)
        assert inboxes[leader].received == [1]
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await db.close()
