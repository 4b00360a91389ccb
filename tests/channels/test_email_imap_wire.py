"""The IMAP poller's pure parts: what it reads from aioimaplib's responses, what it sends, its settings."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from channels.email.imap import AfterAction, HostState, ImapConfig
from channels.email.imap_session import Backoff
from channels.email.imap_wire import (
    bye_pushed,
    encode_mailbox,
    exists_pushed,
    fetched_bodies,
    mailbox_arg,
    search_date,
    search_uids,
    select_info,
)
from hub.errors import ConfigError
from tests.conftest import make_settings


def test_imap_select_info_reads_uidvalidity_uidnext_and_exists() -> None:
    lines = [
        b"FLAGS (\\Answered \\Seen)",
        b"3 EXISTS",
        b"0 RECENT",
        b"OK [UIDVALIDITY 1795926586] UIDs valid",
        b"OK [UIDNEXT 7] Predicted next UID",
        b"[READ-WRITE] Select completed (0.001 + 0.000 secs).",
    ]
    info = select_info(lines)
    assert (info.uidvalidity, info.uidnext, info.exists) == (1795926586, 7, 3)
    with pytest.raises(ValueError, match="UIDVALIDITY"):
        select_info([b"3 EXISTS", b"Select completed."])


def test_imap_search_uids_ignore_the_completion_text() -> None:
    assert search_uids([b"5 3 9", b"Search completed (0.001 + 0.000 secs)."]) == [3, 5, 9]
    assert search_uids([b"SEARCH 4", b"OK"]) == [4]
    assert search_uids([b"", b"Search completed (2 secs)."]) == []
    assert search_uids([b"Search completed (0.001 + 0.000 secs)."]) == []


def test_imap_fetched_bodies_take_the_uid_before_or_after_the_literal() -> None:
    lines: list[Any] = [
        b"1 FETCH (UID 5 BODY[] {5}",
        bytearray(b"hello"),
        b")",
        b"2 FETCH (FLAGS (\\Seen))",  # another client's flag change: no body
        b"3 FETCH (BODY[] {3}",
        bytearray(b"abc"),
        b" UID 9)",
        b"Fetch completed.",
    ]
    assert fetched_bodies(lines) == {5: b"hello", 9: b"abc"}
    assert fetched_bodies([b"Fetch completed."]) == {}


def test_imap_pushes_during_idle() -> None:
    assert exists_pushed([b"4 EXISTS", b"1 RECENT"])
    assert not exists_pushed([b"OK Still here"])
    assert not exists_pushed([b"3 EXPUNGE"])
    assert bye_pushed([b"BYE Server shutting down."])
    assert not bye_pushed([b"4 EXISTS"])


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("Taken in & Traité", "Taken in &- Trait&AOk-"),
        ("台北", "&U,BTFw-"),  # RFC 3501's own example
        ("~peter/mail/日本語/台北", "~peter/mail/&ZeVnLIqe-/&U,BTFw-"),
    ],
)
def test_imap_mailbox_names_in_modified_utf7(name: str, wire: str) -> None:
    assert encode_mailbox(name) == wire


def test_imap_mailbox_args_are_quoted() -> None:
    assert mailbox_arg('Say "hi" \\ there') == '"Say \\"hi\\" \\\\ there"'


def test_imap_search_dates_are_english_whatever_the_locale() -> None:
    assert search_date(date(2026, 2, 1)) == "1-Feb-2026"


def test_imap_backoff_doubles_to_its_ceiling_with_jitter() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(7))
    delays = [backoff.next() for _ in range(6)]
    for delay, cap in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert cap / 2 <= delay <= cap
    backoff.reset()
    assert backoff.next() <= 1.0


def test_imap_config_from_settings(tmp_path: Path) -> None:
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db",
        tmp_path,
        email_imap_host="imap.example.com",
        email_imap_username="support@example.com",
        email_imap_password="app-password",
        email_imap_folders="INBOX, Support ",
        email_imap_after="move:Done",
        email_imap_first_sync="all",
    )
    config = ImapConfig.from_settings(settings)
    assert (config.host, config.port, config.tls) == ("imap.example.com", 993, "tls")
    assert config.folders == ("INBOX", "Support")
    assert config.after == AfterAction("move", "Done")
    assert config.first_sync_days is None
    assert config.poll_interval == 60.0
    assert "app-password" not in repr(config)
    assert ImapConfig.from_settings(make_settings("sqlite://", tmp_path, **_minimal())).first_sync_days == 7


def _minimal() -> dict[str, str]:
    return {"email_imap_host": "h", "email_imap_username": "u", "email_imap_password": "p"}


def test_imap_config_names_every_missing_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        ImapConfig.from_settings(make_settings("sqlite://", tmp_path, email_imap_host="imap.example.com"))
    assert "HUB_EMAIL_IMAP_USERNAME" in str(caught.value)
    assert "HUB_EMAIL_IMAP_PASSWORD" in str(caught.value)
    assert "HUB_EMAIL_IMAP_HOST" not in str(caught.value)
    with pytest.raises(ConfigError, match="HUB_EMAIL_IMAP_AFTER"):
        AfterAction.parse("move:")


@pytest.mark.asyncio
async def test_imap_state_lives_in_the_hub_channel_state() -> None:
    class Host:
        def __init__(self) -> None:
            self.values: dict[tuple[str, str], str] = {}

        async def channel_state(self, channel: str, key: str) -> str | None:
            return self.values.get((channel, key))

        async def set_channel_state(self, channel: str, key: str, value: str) -> None:
            self.values[(channel, key)] = value

    host = Host()
    state = HostState(host)  # type: ignore[arg-type]  # a partial ChannelHost is enough here
    assert await state.get("imap:INBOX") is None
    await state.set("imap:INBOX", "17:4")
    assert await state.get("imap:INBOX") == "17:4"
    assert host.values == {("email", "imap:INBOX"): "17:4"}
