"""What the IMAP poller says and reads on the wire, as pure functions.

``aioimaplib`` hands back a command's untagged lines with the ``* `` (and,
for SEARCH, the ``SEARCH ``) removed, literals as ``bytearray`` items between
``bytes`` lines, and the tagged completion text last. These helpers read that
shape and build the arguments it sends verbatim (aioimaplib quotes nothing):
mailbox names in modified UTF-7 (RFC 3501 5.1.3) and quoted, search dates.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE)
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.IGNORECASE)
_EXISTS = re.compile(rb"^(\d+) EXISTS$", re.IGNORECASE)
_SEARCH_LINE = re.compile(rb"^(?:SEARCH)?(?: ?\d+)*$", re.IGNORECASE)
_FETCH_START = re.compile(rb"^\d+ FETCH \(", re.IGNORECASE)
_FETCH_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Selected:
    """What SELECT told about a mailbox."""

    uidvalidity: int
    uidnext: int | None
    exists: int


def select_info(lines: Sequence[bytes | bytearray]) -> Selected:
    """UIDVALIDITY (mandatory: ValueError without it), UIDNEXT and EXISTS of a SELECT response."""
    uidvalidity: int | None = None
    uidnext: int | None = None
    exists = 0
    for line in lines:
        if isinstance(line, bytearray):
            continue
        if match := _UIDVALIDITY.search(line):
            uidvalidity = int(match.group(1))
        elif match := _UIDNEXT.search(line):
            uidnext = int(match.group(1))
        elif match := _EXISTS.match(line):
            exists = int(match.group(1))
    if uidvalidity is None:
        raise ValueError("the server sent no UIDVALIDITY for the mailbox")
    return Selected(uidvalidity=uidvalidity, uidnext=uidnext, exists=exists)


def search_uids(lines: Sequence[bytes | bytearray]) -> list[int]:
    """The UIDs of a UID SEARCH response, ascending and without repeats.

    The completion text (last line) is never read as numbers, even when it
    holds some ("Search completed (0.001 secs)")."""
    uids: set[int] = set()
    for line in lines[:-1]:
        if isinstance(line, bytearray) or not _SEARCH_LINE.match(line.strip()):
            continue
        uids.update(int(token) for token in line.split() if token.isdigit())
    return sorted(uids)


def fetched_bodies(lines: Sequence[bytes | bytearray]) -> dict[int, bytes]:
    """UID -> the literal of each message in a ``UID FETCH ... (UID BODY.PEEK[])`` response.

    A record starts at ``N FETCH (``; its UID may come before or after the
    literal. Unsolicited FETCH records (another client's flag change) carry no
    literal and are left out."""
    bodies: dict[int, bytes] = {}
    uid: int | None = None
    body: bytes | None = None

    def close_record() -> None:
        if uid is not None and body is not None:
            bodies[uid] = body

    for line in lines[:-1]:
        if isinstance(line, bytearray):
            body = bytes(line)
            continue
        if _FETCH_START.match(line):
            close_record()
            uid, body = None, None
        if uid is None and (match := _FETCH_UID.search(line)):
            uid = int(match.group(1))
    close_record()
    return bodies


def exists_pushed(push: Sequence[bytes | bytearray]) -> bool:
    """Whether lines a server pushed during IDLE announce new mail (``N EXISTS``)."""
    return any(isinstance(line, bytes) and _EXISTS.match(line.strip()) for line in push)


def bye_pushed(push: Sequence[bytes | bytearray]) -> bool:
    """Whether the server said it is closing the connection (``BYE``: shutting down, idle too long...)."""
    return any(isinstance(line, bytes) and line.upper().startswith(b"BYE") for line in push)


def mailbox_arg(name: str) -> str:
    """A mailbox name as a quoted IMAP string, non-ASCII in modified UTF-7."""
    encoded = encode_mailbox(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_mailbox(name: str) -> str:
    """Modified UTF-7 of RFC 3501 5.1.3: ``&`` is ``&-``, other non-printable
    runs are ``&`` + modified base64 of their UTF-16BE + ``-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def search_date(day: date) -> str:
    """A date as IMAP SEARCH SINCE wants it: ``1-Feb-2026`` (English month, whatever the locale)."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"
