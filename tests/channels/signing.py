"""How each provider signs a webhook, genuine and forged (no tests here).

Shared by the contract suite (``test_contract.py``) and the fuzzer
(``test_fuzz.py``), so both sign with the vendor's real algorithm in one
place. A channel whose provider signs differently (Twilio signs the URL and
the sorted form fields, with no timestamp) adds one ``Signer`` here, with the
forgeries that make sense for its scheme.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from channels.fake import sign as sign_fake
from tests.conftest import FAKE_SECRET
from tests.fakes.slack_api import sign_request as sign_slack

WRONG_SECRET = "not-the-secret"
STALE_SECONDS = 6 * 60  # beyond every provider's 5-minute replay window
GARBLED = "v0=\u00e9\u202e\U0001f600"


class Signer(Protocol):
    """Headers that make a body a genuine delivery, or one of ``forgeries``."""

    forgeries: tuple[str, ...]

    def headers(self, body: bytes, *, url: str = "", forgery: str | None = None) -> dict[str, str]:
        """``url``: the full URL the provider posted to (schemes that sign it need it)."""


@dataclass(frozen=True)
class TimestampedHmac:
    """Slack's v0 scheme and the fake channel's copy of it: HMAC-SHA256 over
    ``v0:{timestamp}:{body}``, refused outside a 5-minute window."""

    sign: Callable[..., dict[str, str]]  # (secret, body, timestamp=None) -> headers
    secret: str
    forgeries: tuple[str, ...] = ("bad-signature", "missing-signature", "stale", "garbled-signature")

    def headers(self, body: bytes, *, url: str = "", forgery: str | None = None) -> dict[str, str]:
        if forgery is None:
            return self.sign(self.secret, body)
        if forgery == "bad-signature":
            return self.sign(WRONG_SECRET, body)
        if forgery == "missing-signature":
            return {}
        if forgery == "stale":
            return self.sign(self.secret, body, timestamp=int(time.time()) - STALE_SECONDS)
        if forgery == "garbled-signature":  # not ASCII, as no genuine signature is
            genuine = self.sign(self.secret, body)
            return {name: GARBLED if value.startswith("v0=") else value for name, value in genuine.items()}
        raise ValueError(f"unknown forgery {forgery!r}")


SLACK_SECRET = "contract-slack-signing-secret"
FAKE_SIGNER = TimestampedHmac(sign_fake, FAKE_SECRET)
SLACK_SIGNER = TimestampedHmac(sign_slack, SLACK_SECRET)


@dataclass(frozen=True)
class TwilioUrlSignature:
    """Twilio's scheme: HMAC-SHA1 over the URL it calls and the sorted form
    fields (the real ``RequestValidator``), no timestamp; refused with 403."""

    token: str
    forgeries: tuple[str, ...] = ("bad-signature", "missing-signature", "wrong-url", "garbled-signature")

    def headers(self, body: bytes, *, url: str = "", forgery: str | None = None) -> dict[str, str]:
        from urllib.parse import parse_qsl

        from tests.fakes.twilio_api import sign_twilio

        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if forgery is None:
            return sign_twilio(url, params, self.token)
        if forgery == "bad-signature":
            return sign_twilio(url, params, WRONG_SECRET)
        if forgery == "missing-signature":
            return {}
        if forgery == "wrong-url":  # a proxy that rewrites the path: Twilio signed another URL
            return sign_twilio(url + "/elsewhere", params, self.token)
        if forgery == "garbled-signature":
            return {"X-Twilio-Signature": GARBLED}
        raise ValueError(f"unknown forgery {forgery!r}")


def _twilio_token() -> str:
    from tests.fakes.twilio_api import AUTH_TOKEN

    return AUTH_TOKEN


TWILIO_SIGNER = TwilioUrlSignature(_twilio_token())
