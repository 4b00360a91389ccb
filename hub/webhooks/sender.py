"""The worker that POSTs webhook deliveries (the ``webhooks`` queue of ``hub.jobs``).

Each attempt reads the endpoint as it is now (URL, secrets, active), signs
the payload's exact bytes (``hub.webhooks.signing``) and POSTs them:

- 2xx: delivered (the status and time recorded);
- 408, 409, 425, 429 and 5xx, timeouts and transport errors: retried with
  full-jitter backoff, or after the receiver's ``Retry-After`` (429, 503;
  seconds or an HTTP date, capped at the backoff's cap);
- any other 4xx, a redirect (never followed), a URL no longer allowed or a
  disabled endpoint: dead at once; the last attempt: dead too. Dead rows are
  listed per endpoint and redelivered by an admin (``hub.api.webhooks``).

Every attempt of a delivery carries the same ``X-Servicehub-Delivery``:
receivers deduplicate on it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Unpack

import aiohttp

from hub.errors import ChannelSendError, InvalidInput
from hub.events import utcnow
from hub.jobs.worker import JobWorker, Tuning
from hub.storage import Database
from hub.webhooks.destinations import GuardedResolver, check_url
from hub.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature_header
from hub.webhooks.store import PING, WEBHOOK_DELIVERIES, Delivery, record_response, target_of

log = logging.getLogger(__name__)

USER_AGENT = "Servicehub-Webhooks/1"
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
ERROR_BODY_MAX = 300

# (event, outcome): delivered | retry | dead
OnResult = Callable[[str, str], None]


def retry_after(value: str | None, *, cap: float, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP
    date), at most ``cap``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - (now or utcnow())).total_seconds()), cap)


class WebhookSender(JobWorker[Delivery]):
    def __init__(
        self,
        db: Database,
        *,
        allow_private: bool,
        timeout: float,
        on_result: OnResult | None = None,
        **tuning: Unpack[Tuning],
    ) -> None:
        options: Tuning = {"max_attempts": 12, "base_delay": 5.0, "max_delay": 3600.0, "concurrency": 8}
        options.update(tuning)
        super().__init__(
            db, WEBHOOK_DELIVERIES, self.send, name="webhooks", on_failed=self._failed, on_done=self._done, **options
        )
        self.allow_private = allow_private
        self.timeout = timeout
        self.on_result = on_result
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=None if self.allow_private else GuardedResolver(), limit=64, limit_per_host=8
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stop(self, timeout: float = 5.0) -> None:
        await super().stop(timeout)

    async def send(self, delivery: Delivery) -> tuple[int, datetime]:
        """One attempt; raises ``ChannelSendError`` (retryable or not) on failure."""
        if self._session is None:
            raise ChannelSendError("the webhook sender is not open", retryable=True)
        target = await self.db.read(target_of, delivery.endpoint_id, utcnow())
        if target is None:
            raise ChannelSendError("the endpoint was deleted", retryable=False)
        if not target.active and delivery.event != PING:
            raise ChannelSendError("the endpoint is disabled", retryable=False)
        try:
            url = check_url(target.url, allow_private=self.allow_private)
        except InvalidInput as err:
            raise ChannelSendError(f"the endpoint's URL is refused: {err.message}", retryable=False) from err
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(target.secrets, body, int(time.time())),
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: delivery.idempotency_key,
        }
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                if 200 <= status < 300:
                    return status, utcnow()
                excerpt = (await response.content.read(ERROR_BODY_MAX)).decode("utf-8", "replace")
                wait = retry_after(response.headers.get("Retry-After"), cap=self.max_delay)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            await self.db.write(record_response, delivery.id, None)
            reason = str(err) or type(err).__name__
            raise ChannelSendError(f"{type(err).__name__}: {reason}"[:500], retryable=True) from err
        await self.db.write(record_response, delivery.id, status)
        message = f"HTTP {status}: {excerpt.strip()}"[:500] if excerpt.strip() else f"HTTP {status}"
        if status >= 500 or status in RETRYABLE_4XX:
            honoured = wait if status in (429, 503) else None
            raise ChannelSendError(message, retryable=True, retry_after=honoured, provider_code=str(status))
        if 300 <= status < 400:
            message += " (redirects are not followed: give the endpoint its final URL)"
        raise ChannelSendError(message, retryable=False, provider_code=str(status))

    async def _done(self, delivery: Delivery, _: object) -> None:
        if self.on_result is not None:
            self.on_result(delivery.event, "delivered")

    async def _failed(self, delivery: Delivery, error: ChannelSendError, dead: bool) -> None:
        if self.on_result is not None:
            self.on_result(delivery.event, "dead" if dead else "retry")
