"""IMAP through the whole hub: the e-mail channel reads a real mailbox
(Debian's dovecot on loopback) into the timeline, keeps its cursor in the
hub's channel state, and after a restart imports nothing twice; a mail it
can never read is left in the mailbox without holding up the next ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.storage.schema import messages
from tests.channels.email_support import email_settings
from tests.conftest import Hub, close_hub, start_hub, wait_for
from tests.fakes.dovecot import DOVECOT, PASSWORD, USER, Dovecot, message

pytestmark = pytest.mark.skipif(DOVECOT is None, reason="dovecot is not installed (make test installs dovecot-imapd)")


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def imap_settings(database_url: str, tmp_path: Path, server: Dovecot) -> object:
    return email_settings(
        database_url,
        tmp_path,
        email_addresses="support@example.com",
        email_smtp_port=0,  # IMAP only
        email_imap_host="127.0.0.1",
        email_imap_port=server.port,
        email_imap_tls="none",
        email_imap_username=USER,
        email_imap_password=PASSWORD,
        email_imap_poll_interval=0.2,
        email_imap_first_sync="all",
    )


async def bodies(hub: Hub) -> list[str]:
    return await hub.db.read(
        lambda conn: [
            body
            for body in conn.execute(
                sa.select(messages.c.body).where(messages.c.channel == "email").order_by(messages.c.id)
            ).scalars()
        ]
    )


@pytest.mark.asyncio
async def test_a_mailbox_read_by_imap_lands_on_the_timeline_once(
    database_url: str, tmp_path: Path, dovecot: Dovecot
) -> None:
    settings = imap_settings(database_url, tmp_path, dovecot)
    await dovecot.append(message(1))
    hub = await start_hub(settings)
    try:
        await wait_for(lambda: _has(hub, ["Body of message 1."]), timeout=20)
        # New mail while the hub idles on the folder; and a mail no parser can read, which is left there.
        await dovecot.append(b"\x00\x01 not a mail at all")
        await dovecot.append(message(2))
        await wait_for(lambda: _has(hub, ["Body of message 1.", "Body of message 2."]), timeout=20)
        # The cursor moves after the mail is stored (a crash between the two reads it again, and the
        # Message-ID keeps it once), so it is waited for, not read at once.
        await wait_for(lambda: _cursor_is(hub, ":3"), timeout=20)
    finally:
        await close_hub(hub)
    assert len(await dovecot.uids()) == 3  # nothing was taken out of the mailbox

    # A restart on the same database: nothing imported twice, new mail still comes.
    await dovecot.append(message(3))
    hub = await start_hub(settings)
    try:
        await wait_for(
            lambda: _has(hub, ["Body of message 1.", "Body of message 2.", "Body of message 3."]), timeout=20
        )
    finally:
        await close_hub(hub)


async def _cursor_is(hub: Hub, last_uid: str) -> bool:
    cursor = await hub.service.channel_state("email", "imap:INBOX")
    return cursor is not None and cursor.endswith(last_uid)


async def _has(hub: Hub, wanted: list[str]) -> bool:
    return await bodies(hub) == wanted
