"""A channel's live pushes to the sockets other hub instances hold, over Redis pub/sub.

Behind a load balancer a web chat visitor's socket is held by one instance,
while their reply may be sent by another (the outbox worker that claimed
it, after an agent's reply on that instance's API or Slack). The channel
pushes to the sockets it holds and hands the same frames to its relay
(``channels.base.PushRelay``), which publishes ``{origin, request, address,
frames}`` on ``{HUB_REDIS_PREFIX}:{channel}``; every other instance pushes
them to the sockets it holds for that address (``RelaysPushes.push_local``).

**Delivered.** A send that found no socket at home asks for
acknowledgements: each instance that received the frames answers on the
sender's own channel (``...:ack:{instance}``) whether a socket took them.
The sender waits for as many answers as ``PUBLISH`` counted subscribers
(its own subscription answers itself, without a round trip), at most
``ACK_TIMEOUT``: ``delivered`` when one instance pushed, otherwise the send
is only ``sent`` (a visitor with no socket anywhere, a lost message): the
message is on the timeline, the widget reads it on its next connect, and an
agent's reply is e-mailed to a visitor who left (``hub.conversations.offline``).

**Lost messages.** Pub/sub is at-most-once and the durable record is the
timeline. Redis loses a subscriber's messages only while it is not
subscribed (a restart, a network blip, an output buffer overflow): when the
subscription comes back (redis-py re-subscribes, or the listener does), the
relay calls ``on_gap`` and the channel sends each open socket the messages
after the last ``history`` it sent it (``RelaysPushes.resync``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hub.aio import cancel_and_wait

log = logging.getLogger(__name__)

ACK_TIMEOUT = 1.0  # an instance that got the frames and never answered (it died meanwhile)
# A PUBLISH that gets no answer (Redis unreachable without a refusal): the
# send goes on without the relay rather than hold an outbox slot.
PUBLISH_TIMEOUT = 2.0
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # re-subscribing after Redis went away
STARTUP_WAIT = 10.0  # seconds start() waits for the first subscription

Deliver = Callable[[str, Sequence[dict[str, Any]]], Awaitable[bool]]


class _Answers:
    """The acknowledgements of one relayed send."""

    __slots__ = ("answered", "done", "expected", "pushed")

    def __init__(self) -> None:
        self.answered = 0
        self.expected: int | None = None  # PUBLISH's count, once it returns (answers may come first)
        self.pushed = False
        self.done = asyncio.Event()

    def answer(self, pushed: bool) -> None:
        self.answered += 1
        self.pushed = self.pushed or pushed
        self._check()

    def expect(self, subscribers: int) -> None:
        self.expected = subscribers
        self._check()

    def _check(self) -> None:
        if self.pushed or (self.expected is not None and self.answered >= self.expected):
            self.done.set()


class RedisPushRelay:
    """``PushRelay`` over Redis pub/sub for one channel; ``start``/``close``
    from a cleanup context. ``gaps`` counts re-subscriptions (each one a resync)."""

    def __init__(
        self,
        url: str,
        deliver: Deliver,
        *,
        on_gap: Callable[[], Awaitable[None]],
        channel: str = "servicehub:webchat",
        ack_timeout: float = ACK_TIMEOUT,
        startup_wait: float = STARTUP_WAIT,
    ) -> None:
        import redis.asyncio as redis

        self.instance = uuid.uuid4().hex[:16]
        # Named, so an operator (or a test) can find this subscriber in CLIENT LIST.
        self._redis = redis.from_url(url, client_name=f"servicehub-relay-{self.instance}")
        self.channel = channel
        self._ack_channel = f"{channel}:ack:{self.instance}"
        self._deliver = deliver
        self._on_gap = on_gap
        self.ack_timeout = ack_timeout
        self._waiting: dict[str, _Answers] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.startup_wait = startup_wait
        self._started_late = False  # start() returned before the first subscription
        self.subscribed = False
        self.gaps = 0

    # --- PushRelay ------------------------------------------------------------
    async def relay(self, address: str, frames: Sequence[dict[str, Any]], *, want_ack: bool) -> bool:

        if not want_ack:
            await self._publish(self.channel, self._payload(address, frames, None))
            return False
        request = uuid.uuid4().hex
        answers = self._waiting[request] = _Answers()
        try:
            subscribers = await self._publish(self.channel, self._payload(address, frames, request))
            if subscribers is None:
                return False
            answers.expect(subscribers)
            async with asyncio.timeout(self.ack_timeout):
                await answers.done.wait()
        except TimeoutError:
            log.info("web chat relay: %d of %s instances answered", answers.answered, answers.expected)
        finally:
            del self._waiting[request]
        return answers.pushed

    async def _publish(self, channel: str, payload: str) -> int | None:
        """PUBLISH: how many subscribers got it; None when Redis did not answer."""
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                return int(await self._redis.publish(channel, payload))
        except (RedisError, OSError, TimeoutError) as err:
            log.warning("web chat relay could not publish: %s", err or type(err).__name__)
            return None

    def _payload(self, address: str, frames: Sequence[dict[str, Any]], request: str | None) -> str:
        return json.dumps({"origin": self.instance, "request": request, "address": address, "frames": list(frames)})

    # --- the listener ---------------------------------------------------------
    async def start(self) -> None:
        """Subscribe; wait ``startup_wait`` s at most. An instance starting
        while Redis restarts carries on without it: the listener keeps
        trying, and its first subscription then resyncs like a gap (sockets
        may have connected meanwhile). /readyz shows it degraded until then."""
        self._task = asyncio.create_task(self._listen(), name=f"relay-{self.channel}")
        try:
            async with asyncio.timeout(self.startup_wait):
                await self._ready.wait()
        except TimeoutError:
            self._started_late = True
            log.warning("web chat relay: Redis is not answering; starting without it, subscribing when it does")

    def health(self) -> dict[str, Any]:
        return {"ok": self.subscribed} if self.subscribed else {"ok": False, "error": "not subscribed on Redis"}

    async def _listen(self) -> None:
        from redis.exceptions import RedisError

        attempt = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel, self._ack_channel)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "subscribe" and _text(message.get("channel")) == self.channel:
                        attempt = 0
                        await self._subscribed()
                    elif kind == "message":
                        await self._on_message(_text(message.get("channel")), message.get("data"))
            except (RedisError, OSError) as err:
                self.subscribed = False
                if attempt == 0 or self._ready.is_set():
                    log.warning("web chat relay lost Redis (%s); subscribing again", err)
            finally:
                await pubsub.aclose()
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1

    async def _subscribed(self) -> None:
        self.subscribed = True
        if not self._ready.is_set():
            self._ready.set()
            if not self._started_late:
                return
        # A subscription that came back: what was published meanwhile is lost.
        self.gaps += 1
        try:
            await self._on_gap()
        except Exception:
            log.exception("web chat resync after a relay gap failed")

    async def _on_message(self, channel: str, data: Any) -> None:
        try:
            payload = json.loads(data)
            if channel == self._ack_channel:
                answers = self._waiting.get(payload["request"])
                if answers is not None:
                    answers.answer(payload["pushed"] is True)
                return
            origin, request, address, frames = (
                payload["origin"],
                payload["request"],
                payload["address"],
                payload["frames"],
            )
            if not isinstance(address, str) or not isinstance(frames, list):
                raise TypeError("address or frames of the wrong type")
        except (ValueError, TypeError, KeyError) as err:
            # What was wrong, never the data: frames carry customers' words.
            log.warning("dropping a malformed relay message: %s", f"{type(err).__name__}: {err}"[:200])
            return
        if origin == self.instance:  # our own: the channel pushed it here already
            if request is not None and request in self._waiting:
                self._waiting[request].answer(False)
            return
        try:
            pushed = await self._deliver(address, frames)
        except Exception:
            log.exception("web chat relay could not push to the local sockets")
            pushed = False
        if request is not None:
            await self._acknowledge(origin, request, pushed)

    async def _acknowledge(self, origin: Any, request: Any, pushed: bool) -> None:
        await self._publish(f"{self.channel}:ack:{origin}", json.dumps({"request": request, "pushed": pushed}))

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self._redis.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
