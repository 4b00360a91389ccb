"""The second factor: TOTP (RFC 6238, ``pyotp``) and single-use recovery codes.

Enrolment keeps a new secret on the user with ``totp_enabled_at`` NULL until
a code from the authenticator app confirms it; the QR code is drawn here
(``segno``, an SVG ``data:`` URI), nothing leaves the hub. A code is accepted
for the current 30-second step and one step either side (clock drift), and
**never twice**: the step a code was accepted for is stored, and a code for
that step or an earlier one is refused — by a conditional UPDATE, so two
requests racing with the same code cannot both win, on either backend.

Ten recovery codes are made when the second factor is enabled, shown once
and stored as SHA-256 (80 random bits each: nothing to brute-force); each
works once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.storage.schema import user_recovery_codes, users

DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_LENGTH = 16  # 16 symbols of 31: 79 bits
_CODE = re.compile(r"\d{6}")


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 recommends


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_data_uri(uri: str) -> str:
    """The ``otpauth://`` URI as a QR code, an SVG ``data:`` URI for an ``<img>``."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#000000", light="#ffffff"))


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def clean_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step ``code`` belongs to (now, or one step either side), or None."""
    code = clean_code(code)
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS)
    current = totp.timecode(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared (constant time), whichever matches.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _accept_step(conn: Connection, user_id: int, step: int) -> bool:
    """Record ``step`` as used unless it (or a later one) already was: True when this call won."""
    done = conn.execute(
        sa.update(users)
        .where(users.c.id == user_id, sa.or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step))
        .values(totp_last_step=step)
    )
    return done.rowcount == 1


def use_code(conn: Connection, user_id: int, code: str, *, now: datetime) -> bool:
    """Whether ``code`` proves ``user_id``'s enabled second factor now (and spend it)."""
    row = conn.execute(
        sa.select(users.c.totp_secret).where(users.c.id == user_id, users.c.totp_enabled_at.is_not(None))
    ).first()
    if row is None or row.totp_secret is None:
        return False
    step = matching_step(row.totp_secret, code, now)
    return step is not None and _accept_step(conn, user_id, step)


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(clean_code(code).lower().encode()).hexdigest()


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def use_recovery_code(conn: Connection, user_id: int, code: str, *, now: datetime) -> bool:
    """Whether ``code`` is one of ``user_id``'s unused recovery codes (now used)."""
    cleaned = clean_code(code)
    if not 8 <= len(cleaned) <= 32:
        return False
    done = conn.execute(
        sa.update(user_recovery_codes)
        .where(
            user_recovery_codes.c.user_id == user_id,
            user_recovery_codes.c.code_hash == hash_recovery_code(cleaned),
            user_recovery_codes.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return done.rowcount == 1


def use_either(conn: Connection, user_id: int, code: str, *, now: datetime) -> str | None:
    """A TOTP code or a recovery code: which one worked ("totp", "recovery_code"), or None."""
    if use_code(conn, user_id, code, now=now):
        return "totp"
    if use_recovery_code(conn, user_id, code, now=now):
        return "recovery_code"
    return None


@dataclass(frozen=True, slots=True)
class FactorState:
    enabled: bool
    pending_secret: str | None  # enrolment started, not confirmed
    recovery_codes_left: int


def state(conn: Connection, user_id: int) -> FactorState:
    row = conn.execute(sa.select(users.c.totp_secret, users.c.totp_enabled_at).where(users.c.id == user_id)).one()
    left = conn.execute(
        sa.select(sa.func.count())
        .select_from(user_recovery_codes)
        .where(user_recovery_codes.c.user_id == user_id, user_recovery_codes.c.used_at.is_(None))
    ).scalar_one()
    enabled = row.totp_enabled_at is not None
    return FactorState(enabled, None if enabled else row.totp_secret, int(left))


def start_enrolment(conn: Connection, user_id: int, *, restart: bool = False) -> FactorState:
    """A secret to enrol (kept across reloads of the page; ``restart``: a new one).
    Does nothing to an enabled second factor."""
    current = state(conn, user_id)
    if current.enabled or (current.pending_secret is not None and not restart):
        return current
    conn.execute(
        sa.update(users)
        .where(users.c.id == user_id, users.c.totp_enabled_at.is_(None))
        .values(totp_secret=new_secret(), totp_last_step=None)
    )
    return state(conn, user_id)


def _replace_recovery_codes(conn: Connection, user_id: int, *, now: datetime) -> list[str]:
    conn.execute(sa.delete(user_recovery_codes).where(user_recovery_codes.c.user_id == user_id))
    codes = new_recovery_codes()
    conn.execute(
        sa.insert(user_recovery_codes),
        [{"user_id": user_id, "code_hash": hash_recovery_code(code), "created_at": now} for code in codes],
    )
    return codes


def confirm_enrolment(conn: Connection, user_id: int, code: str, *, now: datetime) -> list[str] | None:
    """Enable the pending secret when ``code`` matches it: returns the new
    recovery codes (to show once), or None when the code is wrong."""
    row = conn.execute(
        sa.select(users.c.totp_secret).where(users.c.id == user_id, users.c.totp_enabled_at.is_(None))
    ).first()
    if row is None or row.totp_secret is None:
        return None
    step = matching_step(row.totp_secret, code, now)
    if step is None or not _accept_step(conn, user_id, step):
        return None
    conn.execute(sa.update(users).where(users.c.id == user_id).values(totp_enabled_at=now))
    return _replace_recovery_codes(conn, user_id, now=now)


def regenerate_recovery_codes(conn: Connection, user_id: int, code: str, *, now: datetime) -> list[str] | None:
    """New recovery codes (the old ones stop working) when ``code`` proves the second factor."""
    if not use_code(conn, user_id, code, now=now):
        return None
    return _replace_recovery_codes(conn, user_id, now=now)


def disable(conn: Connection, user_id: int, code: str | None, *, now: datetime) -> bool:
    """Turn the second factor off; needs a TOTP or recovery code (None: the
    command line, which needs none). False when the code is wrong."""
    if code is not None and use_either(conn, user_id, code, now=now) is None:
        return False
    conn.execute(
        sa.update(users)
        .where(users.c.id == user_id)
        .values(totp_secret=None, totp_enabled_at=None, totp_last_step=None)
    )
    conn.execute(sa.delete(user_recovery_codes).where(user_recovery_codes.c.user_id == user_id))
    return True
