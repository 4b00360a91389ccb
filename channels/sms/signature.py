"""Twilio's request signature, checked on the raw body before anything reads it.

Twilio signs ``X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + each
form parameter's name and value, sorted by name))`` where URL is exactly the
one it called, query string included. Behind a reverse proxy the hub never
sees that URL (host, scheme, port and prefix may all differ), so it is built
from ``HUB_PUBLIC_URL`` and the request's raw path: a hub configured with
another public URL refuses every request, loudly, instead of trusting a
``Host`` header. Behind a proxy listed in ``HUB_TRUSTED_PROXIES`` that says
which scheme and host the provider called (``X-Forwarded-Proto``/``-Host`` or
``Forwarded``; ``hub/proxy.py`` reads them only from trusted hops), that URL
is accepted too: a hub reached under several names still checks the one
Twilio signed.

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
from hub.proxy import FORWARDED_ORIGIN

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

    def urls_of(self, request: web.Request) -> list[str]:
        """``url_of``, then the URL a trusted proxy says was called, if it differs."""
        urls = [self.url_of(request)]
        forwarded = request.get(FORWARDED_ORIGIN)
        if forwarded is not None and forwarded + request.raw_path not in urls:
            urls.append(forwarded + request.raw_path)
        return urls

    def check(self, request: web.Request, body: bytes) -> None:
        """RefusedSignature (403) unless Twilio signed exactly this URL and body."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise RefusedSignature("Twilio signature missing")
        params, urls = form_params(body), self.urls_of(request)
        if not any(self.validator.validate(url, params, signature) for url in urls):
            # The URL is the usual culprit (HUB_PUBLIC_URL not the one Twilio
            # calls); it is no secret, so the debug log names it.
            log.debug("Twilio signature does not match for %s", " or ".join(urls))
            raise RefusedSignature("Twilio signature does not match")
