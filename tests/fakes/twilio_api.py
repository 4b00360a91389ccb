"""A loopback stand-in for Twilio's Messages API (aiohttp ``examples/fake_server.py`` style).

Point the real ``twilio`` client at it with ``HUB_TWILIO_API_URL=api.base_url``
(the channel's http client sends ``https://api.twilio.com/...`` there). It
serves:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: checks HTTP basic
  auth, records the message, answers Twilio's JSON with a fresh ``SM...`` sid;
- ``GET`` of the same path: the account's messages, newest first, filtered on
  ``To``, ``From``, ``DateSent``/``DateSent<``/``DateSent>`` and paged in
  Twilio's shape (``next_page_uri``...), so ``messages.list_async`` works.

Control: ``fail_next`` (statuses, or ``(status, twilio_code)``) refuses the
next creates with Twilio's error JSON; ``after_accept`` makes the next creates
record the message and then ``"hang"`` (never answer: the hub dies waiting)
or ``"reset"`` (drop the connection); ``hold_sending`` leaves new messages
queued, without a send date. Also: ``sign_twilio`` signs a webhook with the
real ``RequestValidator``; ``inbound_params`` is a message webhook's form as
Twilio sends it; ``post_status`` posts a signed status callback to the hub.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "test-twilio-auth-token-0123456789"
API_VERSION = "2010-04-01"

ERRORS: dict[int, str] = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    21211: "The 'To' number is not a valid phone number.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    63016: "Failed to send freeform message because you are outside the allowed window.",
}


def sign_twilio(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    """The ``X-Twilio-Signature`` header Twilio would send for a POST of ``params`` to ``url``."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def inbound_params(
    *, sender: str, body: str, message_sid: str | None = None, to: str = "+15005550006", **extra: str
) -> dict[str, str]:
    """An inbound message webhook's form, with the fields Twilio sends."""
    sid = message_sid or "SM" + secrets.token_hex(16)
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "US",
        "To": to,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "ApiVersion": API_VERSION,
    }
    params.update(extra)
    return params


def _rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment) if moment is not None else None


@dataclass
class FakeMessage:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    date_created: datetime
    date_sent: datetime | None
    status: str = "queued"

    def resource(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{ACCOUNT_SID}/Messages/{self.sid}.json"
        return {
            "account_sid": ACCOUNT_SID,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": _rfc2822(self.date_created),
            "date_sent": _rfc2822(self.date_sent),
            "date_updated": _rfc2822(self.date_sent or self.date_created),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": self.to,
            "uri": uri,
        }


@dataclass
class FakeTwilioApi:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    messages: list[FakeMessage] = field(default_factory=list)
    # The next creates fail: an HTTP status, or (status, Twilio error code).
    fail_next: list[int | tuple[int, int]] = field(default_factory=list)
    # The next lists fail the same way.
    fail_list_next: list[int | tuple[int, int]] = field(default_factory=list)
    # The next creates are recorded, then "hang" (no answer) or "reset" (connection dropped).
    after_accept: list[str] = field(default_factory=list)
    # New messages stay queued, without a send date (a Messaging Service's queue).
    hold_sending: bool = False
    # Every request: (method, path, query).
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    server: TestServer | None = None
    _sids: Any = field(default_factory=lambda: itertools.count(1))
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    # Creates that reached the "hang" and wait there.
    hanging: int = 0

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def messages_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    async def start(self) -> FakeTwilioApi:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages.json", self._list)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return self

    async def close(self) -> None:
        self._released.set()
        if self.server is not None:
            await self.server.close()

    def sent_to(self, to: str) -> list[FakeMessage]:
        return [m for m in self.messages if m.to == to]

    def by_sid(self, sid: str) -> FakeMessage:
        return next(m for m in self.messages if m.sid == sid)

    # --- the API -----------------------------------------------------------------
    def _error(self, status: int, code: int | None = None) -> web.Response:
        code = code or {401: 20003, 429: 20429}.get(status, status)
        body = {
            "code": code,
            "message": ERRORS.get(code, "Internal Server Error" if status >= 500 else "Bad Request"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return web.json_response(body, status=status)

    def _refusal(self, request: web.Request, queue: list[int | tuple[int, int]]) -> web.Response | None:
        if request.match_info["account"] != self.account_sid or not self._authorised(request):
            return self._error(401)
        if queue:
            failure = queue.pop(0)
            status, code = failure if isinstance(failure, tuple) else (failure, None)
            return self._error(status, code)
        return None

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return secrets.compare_digest(request.headers.get("Authorization", ""), f"Basic {expected}")

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        refusal = self._refusal(request, self.fail_next)
        if refusal is not None:
            return refusal
        form = await request.post()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        from_, service = form.get("From"), form.get("MessagingServiceSid")
        if not to:
            return self._error(400, 21604)
        if not from_ and not service:
            return self._error(400, 21603)
        now = datetime.now(UTC)
        message = FakeMessage(
            sid=f"SM{next(self._sids):032x}",
            to=to,
            # A Messaging Service picks a number of its pool.
            from_=str(from_) if from_ else "+15005550006",
            messaging_service_sid=str(service) if service else None,
            body=body,
            status_callback=str(form["StatusCallback"]) if form.get("StatusCallback") else None,
            date_created=now,
            date_sent=None if self.hold_sending else now,
            status="accepted" if service else "queued",
        )
        self.messages.append(message)
        if self.after_accept:
            outcome = self.after_accept.pop(0)
            if outcome == "hang":
                self.hanging += 1
                await self._released.wait()
            elif outcome == "reset":
                assert request.transport is not None
                request.transport.abort()
                raise web.HTTPInternalServerError()
        return web.json_response(message.resource(), status=201)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        refusal = self._refusal(request, self.fail_list_next)
        if refusal is not None:
            return refusal
        query = request.query
        found = [m for m in self.messages if self._matches(m, query)]
        found.sort(key=lambda m: (m.date_created, m.sid), reverse=True)
        page_size = min(int(query.get("PageSize", "50")), 1000)
        page = int(query.get("Page", "0"))
        chunk = found[page * page_size : (page + 1) * page_size]
        base = {k: v for k, v in query.items() if k not in ("Page", "PageToken")}

        def uri(number: int) -> str:
            return f"{request.path}?{urlencode({**base, 'Page': number, 'PageToken': f'PA{number}'})}"

        more = (page + 1) * page_size < len(found)
        return web.json_response(
            {
                "messages": [m.resource() for m in chunk],
                "end": page * page_size + max(len(chunk) - 1, 0),
                "first_page_uri": uri(0),
                "next_page_uri": uri(page + 1) if more else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": uri(page - 1) if page else None,
                "start": page * page_size,
                "uri": f"{request.path}?{urlencode(dict(query))}",
            }
        )

    @staticmethod
    def _matches(message: FakeMessage, query: Any) -> bool:
        if "To" in query and message.to != query["To"]:
            return False
        if "From" in query and message.from_ != query["From"]:
            return False
        for name, accept in (
            ("DateSent", lambda sent, day: sent.date() == day),
            ("DateSent<", lambda sent, day: sent.date() <= day),
            ("DateSent>", lambda sent, day: sent.date() >= day),
        ):
            if name in query:
                day = datetime.fromisoformat(query[name][:10]).date()
                if message.date_sent is None or not accept(message.date_sent, day):
                    return False
        return True

    # --- Twilio calling the hub ----------------------------------------------------------
    async def post_status(
        self,
        client: TestClient,
        sid: str,
        status: str,
        *,
        error_code: str | None = None,
        token: str | None = None,
        public_url: str | None = None,
    ) -> Any:
        """POST Twilio's status callback for message ``sid`` to the URL the hub gave,
        signed for that public URL and sent to the hub's loopback server (at the
        path after ``public_url``, as a reverse proxy that strips a prefix would)."""
        message = self.by_sid(sid)
        assert message.status_callback, "the message was sent without a StatusCallback"
        message.status = status
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_ or "",
            "To": message.to,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
        if message.messaging_service_sid:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if error_code:
            params["ErrorCode"] = error_code
        headers = sign_twilio(message.status_callback, params, token or self.auth_token)
        if public_url is not None:
            assert message.status_callback.startswith(public_url)
            local = message.status_callback[len(public_url.rstrip("/")) :]
        else:
            url = urlsplit(message.status_callback)
            local = f"{url.path}?{url.query}" if url.query else url.path
        return await client.post(local, data=params, headers=headers)
