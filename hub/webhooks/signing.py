"""How a delivery is signed, and how a receiver checks it (Stripe's scheme).

``X-Servicehub-Signature: t=<unix seconds>,v1=<hex>`` where the hex is
HMAC-SHA256 with the endpoint's secret over ``"{t}.{body}"`` (the raw bytes
sent). Signing the timestamp lets a receiver refuse replays older than its
window; while a rotated secret's previous one still signs, the header holds
two ``v1=`` entries and either may match.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

SIGNATURE_HEADER = "X-Servicehub-Signature"
EVENT_HEADER = "X-Servicehub-Event"
DELIVERY_HEADER = "X-Servicehub-Delivery"
SCHEME = "v1"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh endpoint secret: 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(secrets_: Iterable[str], body: bytes, timestamp: int) -> str:
    """The header's value: the timestamp and one ``v1`` per secret that signs."""
    parts = [f"t={timestamp}"]
    parts += [f"{SCHEME}={signature(secret, timestamp, body)}" for secret in secrets_]
    return ",".join(parts)


def verify_signature(
    secret: str, header: str | None, body: bytes, tolerance: float = 300, *, now: float | None = None
) -> bool:
    """True when ``header`` (X-Servicehub-Signature) signs ``body`` with
    ``secret`` and its timestamp is within ``tolerance`` seconds of ``now``.
    Compares in constant time; any malformed header is simply False."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
