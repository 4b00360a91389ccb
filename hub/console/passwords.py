"""People's passwords: argon2id (argon2-cffi's ``PasswordHasher``), never on the event loop.

A hash takes ~50-300 ms of CPU and 64 MiB of memory (RFC 9106's
low-memory profile, argon2-cffi's default), so it runs on a pool of two
threads: a burst of sign-ins queues instead of taking every core and
gigabytes of memory. An unknown e-mail (or an account with no password yet)
is checked against a dummy hash of the same parameters, so the time taken
does not tell which accounts exist. A hash made with older parameters is
replaced at the next successful sign-in (``check_needs_rehash``).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Connection

from hub.errors import InvalidInput
from hub.storage.schema import users

MIN_LENGTH = 10
# Bounds the work one request can ask for; longer is no safer.
MAX_LENGTH = 1024

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
_hasher = PasswordHasher()


def hasher() -> PasswordHasher:
    return _hasher


def use_hasher(new: PasswordHasher) -> None:
    """Replace the parameters (tests of the rehash; a deployment tuning its cost)."""
    global _hasher
    _hasher = new
    _dummy_hash.cache_clear()


def check_new_password(password: str) -> str:
    """``password`` when it may be set; InvalidInput naming the rule otherwise."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"a password may have at most {MAX_LENGTH} characters")
    if not password.strip():
        raise InvalidInput("a password cannot be only spaces")
    return password


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    # A new hash of the same password when the stored one used other parameters.
    rehash: str | None = None


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("servicehub: no such account")


def _verify(stored: str | None, password: str) -> Verdict:
    if stored is None or len(password) > MAX_LENGTH:
        try:
            _hasher.verify(_dummy_hash(), password[:MAX_LENGTH])
        except VerificationError:
            pass
        return Verdict(False)
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return Verdict(False)
    return Verdict(True, _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None)


async def verify(stored: str | None, password: str) -> Verdict:
    """Whether ``password`` matches ``stored`` (None: no account or no password,
    checked against a dummy hash all the same)."""
    return await asyncio.get_running_loop().run_in_executor(_pool, _verify, stored, password)


async def hash_password(password: str) -> str:
    check_new_password(password)
    return await asyncio.get_running_loop().run_in_executor(_pool, _hasher.hash, password)


async def warm_up() -> None:
    """Make the dummy hash before the first sign-in (its first use would otherwise take longer)."""
    await asyncio.get_running_loop().run_in_executor(_pool, _dummy_hash)


def set_password_hash(conn: Connection, user_id: int, password_hash: str, *, now: datetime) -> None:
    conn.execute(
        sa.update(users).where(users.c.id == user_id).values(password_hash=password_hash, password_changed_at=now)
    )
