"""One error tree for the hub. A single middleware maps it to JSON responses.

Retryable vs. permanent vs. invalid input, after Home Assistant's
ConfigEntryNotReady/ConfigEntryAuthFailed split. Raise these ``from err``.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class ConfigError(HubError):
    """Settings are missing or wrong; raised at start-up, never at run time."""

    code = "config_error"


class InvalidInput(HubError):
    """The caller sent something malformed: HTTP 400 with the reason."""

    status = 400
    code = "invalid_input"


class InvalidJSON(InvalidInput):
    """A body or frame that is not JSON the hub takes: malformed, nested too
    deeply, or holding ``NaN``/``Infinity``. A 400 like any invalid input; the
    web chat answers it with an ``invalid_json`` frame."""


class TooLarge(InvalidInput):
    """Input over a size limit (a message longer than its channel allows).

    Still a 400 like any invalid input; the type lets the web chat answer
    ``too_large`` instead of ``invalid_input`` without reading the message.
    """

    code = "too_large"


class NotFound(HubError):
    status = 404
    code = "not_found"


class Conflict(HubError):
    status = 409
    code = "conflict"


class Unauthorized(HubError):
    status = 401
    code = "unauthorized"


class Forbidden(HubError):
    status = 403
    code = "forbidden"


class InvalidSignature(Unauthorized):
    """A webhook's signature is missing, forged or outside the replay window."""

    code = "invalid_signature"


class RefusedSignature(InvalidSignature):
    """An invalid signature answered 403, as the vendor documents it (Twilio)."""

    status = 403


class RateLimited(HubError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ChannelSendError(HubError):
    """Delivery through a channel failed.

    ``retryable`` tells the outbox whether another attempt can succeed
    (timeouts, 5xx, 429) or not (4xx: bad number, unknown recipient).
    """

    code = "channel_send_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        provider_code: str | None = None,
        opted_out: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retryable = retryable
        self.retry_after = retry_after
        # The provider's own error code (Twilio 21211, 21610...), kept with the dead letter.
        self.provider_code = provider_code
        # The recipient unsubscribed at the provider (Twilio 21610): the hub
        # marks the address opted out so that nothing more is queued to it.
        self.opted_out = opted_out


class Unavailable(HubError):
    """A dependency (Rasa, Chroma, the database) cannot be reached right now."""

    status = 503
    code = "unavailable"
