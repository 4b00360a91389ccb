"""The web chat's guards: visitor tokens, identity verification, origins.

Its rate limits are the hub's one ``RateLimiter`` (``hub.ratelimit``).

Pure helpers with no I/O, so each is tested on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from hub.errors import InvalidSignature

TOKEN_SALT = "servicehub.webchat.visitor"


def new_visitor_id() -> str:
    return "v_" + secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class VisitorClaims:
    visitor_id: str
    user_key: str | None = None  # "id:..." or "email:..." once identity-verified


class VisitorTokens:
    """Signed, stateless visitor tokens (itsdangerous, HMAC-SHA1 over a timestamped payload).

    ``secrets[0]`` signs; every secret verifies, so a secret can be rotated
    without logging visitors out.
    """

    def __init__(self, secret_list: Sequence[str], *, max_age_seconds: float) -> None:
        if not secret_list:
            raise ValueError("at least one secret is needed")
        # itsdangerous signs with the LAST key of the list.
        self._serializer = URLSafeTimedSerializer(list(reversed(secret_list)), salt=TOKEN_SALT)
        self.max_age = max_age_seconds

    def issue(self, claims: VisitorClaims) -> str:
        payload: dict[str, str] = {"v": claims.visitor_id}
        if claims.user_key:
            payload["u"] = claims.user_key
        return self._serializer.dumps(payload)

    def verify(self, token: object) -> VisitorClaims:
        """The claims of ``token``; ``InvalidSignature`` when it is forged, altered or expired."""
        if not isinstance(token, str) or not token or len(token) > 1024:
            raise InvalidSignature("token missing or malformed")
        try:
            payload = self._serializer.loads(token, max_age=round(self.max_age))
        except BadSignature as err:  # SignatureExpired is a BadSignature too
            raise InvalidSignature(f"visitor token rejected: {type(err).__name__}") from err
        if not isinstance(payload, dict) or not isinstance(payload.get("v"), str):
            raise InvalidSignature("visitor token has no visitor id")
        user_key = payload.get("u")
        return VisitorClaims(payload["v"], user_key if isinstance(user_key, str) else None)


def user_hash(secret: str, basis: str) -> str:
    """What the host site computes for a logged-in user (Intercom's identity verification)."""
    return hmac.new(secret.encode(), basis.encode(), hashlib.sha256).hexdigest()


def verify_user_hash(secret: str, basis: str, claimed: str) -> bool:
    return hmac.compare_digest(user_hash(secret, basis), claimed.lower())


def verified_visitor_id(secret: str, user_key: str) -> str:
    """A stable visitor id for a verified user, so every device sees the same conversation."""
    digest = hmac.new(secret.encode(), b"visitor:" + user_key.encode(), hashlib.sha256).hexdigest()
    return "u_" + digest[:32]


def origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class OriginPolicy:
    """Which page origins may open the chat socket.

    An explicit list (``*`` allows any), or by default the hub's own origin
    (the request's ``Host``) and the public URL's. Requests without an
    ``Origin`` header are not browsers and are let through: the check keeps
    other sites' pages from using a visitor's browser, nothing more.
    """

    def __init__(self, allowed: Sequence[str], public_url: str) -> None:
        self.any = "*" in allowed
        self.allowed = {origin_of(o) for o in allowed if o != "*"} - {""}
        self.same_origin_only = not allowed
        self.public_origin = origin_of(public_url)

    def allows(self, origin: str | None, *, own_origin: str) -> bool:
        if origin is None:
            return True
        origin = origin_of(origin)
        if self.any:
            return True
        if self.same_origin_only:
            return origin in (origin_of(own_origin), self.public_origin)
        return origin in self.allowed
