"""Twilio's REST API through the ``twilio`` package, without blocking the loop.

The SDK's ``AsyncTwilioHttpClient`` (aiohttp) carries every call; a subclass
sends them to ``HUB_TWILIO_API_URL`` instead of ``https://api.twilio.com``
when that is set (how the tests point the real SDK at a fake on loopback),
puts a timeout on every request (the SDK's default is none) and keeps the
SDK's request log out of INFO: it would log the query, and a message list's
query holds the customer's number.

Failures become ``ChannelSendError``: transport errors, timeouts, 429 and 5xx
are retryable; any other 4xx is not, and carries Twilio's error code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.sms import codes
from hub.errors import ChannelSendError

log = logging.getLogger(__name__)

# What a call to Twilio may fail with (anything else is a bug, and propagates).
FAILURES = (TwilioException, aiohttp.ClientError, TimeoutError, OSError)


class RoutedHttpClient(AsyncTwilioHttpClient):
    """The SDK's aiohttp client, sent to ``api_url`` (when set) with a timeout."""

    def __init__(self, *, api_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.api_url = api_url.rstrip("/")

    def route(self, url: str) -> str:
        if not self.api_url:
            return url
        parts = urlsplit(url)
        if parts.hostname is None or not parts.hostname.endswith("twilio.com"):
            return url
        return self.api_url + url[len(f"{parts.scheme}://{parts.netloc}") :]

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        return await super().request(
            method,
            self.route(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )

    def log_request(self, kwargs: dict[str, Any]) -> None:
        log.debug("Twilio API %s %s", kwargs["method"], urlsplit(kwargs["url"]).path)

    def log_response(self, status_code: int, response: Any) -> None:
        log.debug("Twilio API answered HTTP %s", status_code)


@dataclass(frozen=True, slots=True)
class Sender:
    """Who texts: a number (``+1555...`` or ``whatsapp:+1555...``) or a Messaging Service."""

    address: str
    messaging_service: bool

    def create_args(self) -> dict[str, str]:
        return {"messaging_service_sid": self.address} if self.messaging_service else {"from_": self.address}

    def sent_it(self, record: Any) -> bool:
        if self.messaging_service:
            return bool(record.messaging_service_sid == self.address)
        return bool(record.from_ == self.address)


@dataclass(frozen=True, slots=True)
class SentMessage:
    sid: str
    body: str
    created_at: datetime | None


class TwilioMessages:
    """The two calls the channel makes: create a message, list recent ones."""

    def __init__(self, account_sid: str, auth_token: str, *, api_url: str, timeout: float) -> None:
        self._credentials = (account_sid, auth_token)
        self._api_url = api_url
        self._timeout = timeout
        self._http: RoutedHttpClient | None = None
        self._client: Client | None = None

    async def open(self) -> None:
        # The SDK's client makes its aiohttp session at once: on the loop, here.
        self._http = RoutedHttpClient(api_url=self._api_url, timeout=self._timeout)
        self._client = Client(*self._credentials, http_client=self._http)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ChannelSendError("the Twilio client is not open (the channel is not started)", retryable=True)
        return self._client

    async def create(self, *, to: str, body: str, sender: Sender, status_callback: str) -> str:
        try:
            message = await self.client.messages.create_async(
                to=to, body=body, status_callback=status_callback, **sender.create_args()
            )
        except FAILURES as err:
            raise send_error(err, "send") from err
        if not message.sid:
            raise ChannelSendError("Twilio accepted the message without a sid", retryable=True)
        return str(message.sid)

    async def recent(self, *, to: str, sender: Sender, limit: int) -> list[SentMessage]:
        """Messages sent to ``to`` by ``sender``, newest first (at most ``limit``).

        No ``DateSent`` filter: a message Twilio accepted but has not sent yet
        (queued behind a Messaging Service's rate) has no send date, and a
        date filter would miss exactly the message a crash left behind.
        """
        filters: dict[str, Any] = {"to": to}
        if not sender.messaging_service:
            filters["from_"] = sender.address
        try:
            records = await self.client.messages.list_async(limit=limit, page_size=min(limit, 50), **filters)
        except FAILURES as err:
            raise send_error(err, "list sent messages") from err
        return [
            SentMessage(str(record.sid), record.body or "", record.date_created)
            for record in records
            if record.sid and sender.sent_it(record)
        ]


def send_error(err: Exception, action: str) -> ChannelSendError:
    """``err`` from the SDK or the transport as a ChannelSendError (its text
    holds codes and statuses only, never a number or a body)."""
    if isinstance(err, TwilioRestException | TwilioServiceException):
        status = int(err.status)
        code = str(err.code) if err.code is not None and err.code != status else None
        if status == 429 or status >= 500:
            return ChannelSendError(
                f"Twilio {action}: HTTP {status}" + (f" (error {code})" if code else ""),
                retryable=True,
                provider_code=code,
            )
        opted_out = code in codes.OPTED_OUT
        return ChannelSendError(
            codes.send_refusal(code, status), retryable=False, provider_code=code, opted_out=opted_out
        )
    if isinstance(err, TimeoutError | aiohttp.ClientError | OSError):
        return ChannelSendError(f"Twilio {action}: {type(err).__name__} (no answer)", retryable=True)
    # Another TwilioException, e.g. a page that is not JSON: Twilio is not answering as it should.
    return ChannelSendError(f"Twilio {action}: {type(err).__name__}", retryable=True)
