"""A channel that records what it sends: for tests, demos and benchmarks.

Inbound: ``POST /channels/fake/webhook`` with JSON
``{"from": "visitor-1", "text": "hi", "id": "ext-1", "name": "Ada"}`` (or a
list of them), signed like Slack's v0 scheme but with its own header names:
``X-Fake-Timestamp`` and ``X-Fake-Signature: v0=hex(hmac_sha256(secret,
"v0:{timestamp}:{body}"))``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from channels.base import Channel, InboundMessage, OutboundMessage, SendResult
from hub.errors import ChannelSendError, InvalidInput, InvalidSignature
from hub.inputs import ascii_int, load_json

REPLAY_WINDOW_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that make ``body`` a valid fake-channel webhook."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.digest(secret.encode(), base, hashlib.sha256).hex()
    return {"X-Fake-Timestamp": ts, "X-Fake-Signature": f"v0={digest}"}


@dataclass
class FakeRecorder:
    """What the fake channel sent; shared across restarts in tests."""

    sent: list[OutboundMessage] = field(default_factory=list)
    fail_next: list[ChannelSendError] = field(default_factory=list)
    delay: float = 0.0

    def counts(self) -> Counter[str]:
        return Counter(m.idempotency_key for m in self.sent)


class FakeChannel(Channel):
    name: ClassVar[str] = "fake"
    max_text_len: ClassVar[int | None] = 10_000
    required_settings = ("fake_secret",)

    def __init__(self, settings: Any, recorder: FakeRecorder | None = None) -> None:
        super().__init__(settings)
        self.recorder = recorder or FakeRecorder()
        self._secret = settings.fake_secret.get_secret_value().encode()

    async def verify(self, request: web.Request, body: bytes) -> None:
        timestamp = request.headers.get("X-Fake-Timestamp", "")
        signature = request.headers.get("X-Fake-Signature", "")
        seconds = ascii_int(timestamp)
        if seconds is None or abs(time.time() - seconds) > REPLAY_WINDOW_SECONDS:
            raise InvalidSignature("timestamp missing or outside the replay window")
        base = b"v0:" + timestamp.encode() + b":" + body
        expected = "v0=" + hmac.digest(self._secret, base, "sha256").hex()
        if not self.same_signature(expected, signature):
            raise InvalidSignature("signature mismatch")

    def parse(self, request: web.Request, body: bytes) -> list[InboundMessage]:
        payload = load_json(body)
        items = payload if isinstance(payload, list) else [payload]
        messages = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidInput(f"item {index} is not an object")
            sender, text = item.get("from"), item.get("text")
            if not isinstance(sender, str) or not sender.strip():
                raise InvalidInput(f"item {index}: 'from' must be a non-empty string")
            if not isinstance(text, str):
                raise InvalidInput(f"item {index}: 'text' must be a string")
            external_id = item.get("id")
            if external_id is not None and not isinstance(external_id, str):
                raise InvalidInput(f"item {index}: 'id' must be a string")
            if external_id is None:  # a replayed id-less delivery is stored once
                external_id = self.delivery_id(request.headers.get("X-Fake-Signature", ""), index)
            for optional in ("name", "thread", "subject"):
                if item.get(optional) is not None and not isinstance(item[optional], str):
                    raise InvalidInput(f"item {index}: '{optional}' must be a string")
            hints = item.get("hints") or {}
            if not isinstance(hints, dict):
                raise InvalidInput(f"item {index}: 'hints' must be an object")
            messages.append(
                InboundMessage(
                    channel=self.name,
                    sender=sender.strip(),
                    text=self.check_text(text),
                    external_id=external_id,
                    sender_name=item.get("name"),
                    thread_key=item.get("thread"),
                    subject=item.get("subject"),
                    metadata={"tier": item["tier"]} if "tier" in item else {},
                    contact_hints={k: str(v) for k, v in hints.items()},
                    hints_verified=bool(item.get("hints_verified", False)),
                )
            )
        return messages

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.recorder.delay:
            await asyncio.sleep(self.recorder.delay)
        if self.recorder.fail_next:
            raise self.recorder.fail_next.pop(0)
        self.recorder.sent.append(message)
        return SendResult(provider_id=f"fake-{message.idempotency_key}", delivered=True)
