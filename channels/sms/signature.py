"""Twilio's request signature, checked on the raw body before anything reads it.

Twilio signs ``X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + each
form parameter's name and value, sorted by name))`` where URL is exactly the
one it called, query string included. Behind a reverse proxy the hub never
sees that URL (host, scheme, port and prefix may all differ), so it is built
from ``HUB_PUBLIC_URL`` and the request's raw path: a hub configured with
another public URL refuses every request, loudly, instead of trusting a
``Host`` header.

The check is the ``twilio`` package's own ``RequestValidator`` (constant-time
comparison, with and without the default port). It is synchronous but only
two HMAC-SHA1s over a few hundred bytes, so it runs on the event loop.
There is no timestamp to bound replays: a replayed message carries its
MessageSid and is stored once; a replayed status repeats what is known.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator

from hub.errors import RefusedSignature

log = logging.getLogger(__name__)


def form_params(body: bytes) -> MultiDict[str]:
    """The form as Twilio signed it (blank values kept, every value of a name)."""
    return MultiDict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


class TwilioSignature:
    def __init__(self, auth_token: str, public_url: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.public_url = public_url.rstrip("/")

    def url_of(self, request: web.Request) -> str:
        """The URL Twilio called: the public base and the path as sent (still encoded)."""
        return self.public_url + request.raw_path

    def check(self, request: web.Request, body: bytes) -> None:
        """RefusedSignature (403) unless Twilio signed exactly this URL and body."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise RefusedSignature("Twilio signature missing")
        if not self.validator.validate(self.url_of(request), form_params(body), signature):
            # The URL is the usual culprit (HUB_PUBLIC_URL not the one Twilio
            # calls); it is no secret, so the debug log names it.
            log.debug("Twilio signature does not match for %s", self.url_of(request))
            raise RefusedSignature("Twilio signature does not match")
