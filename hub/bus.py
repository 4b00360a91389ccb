"""Publish/subscribe for domain events.

``EventBus`` is the interface; ``LocalBus`` delivers in-process. A
Redis-backed bus implements the same two methods. One failing subscriber
never hurts the others: its exception is logged and counted, and the rest
still run.

A subscriber runs on every instance (a live push must reach the sockets
wherever they are), unless it subscribes with ``here=True``: then it gets
only the events published by its own instance, once in the cluster. That is
for work an event triggers, such as the echo bot's reply: run on every
instance it was done once per instance (and deduplicated), which cost a
second transaction and a second outbox claim per message with two instances.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast, overload

from hub.aio import cancel_and_wait
from hub.events import Event

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], Awaitable[None]]
Unsubscribe = Callable[[], None]
E = TypeVar("E", bound=Event)


class EventBus(Protocol):
    # A handler for one event type takes that type; only a handler for every
    # event (``None``) must take any ``Event``.
    @overload
    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None]], *, here: bool = False
    ) -> Unsubscribe: ...
    @overload
    def subscribe(self, event_type: None, handler: Subscriber, *, here: bool = False) -> Unsubscribe: ...
    def subscribe(
        self, event_type: type[E] | None, handler: Callable[[E], Awaitable[None]], *, here: bool = False
    ) -> Unsubscribe:
        """Call ``handler`` for every event of ``event_type`` (``None``: all);
        ``here``: only those this instance published. Returns unsubscribe."""

    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to its subscribers; never raises because of a subscriber."""


class LocalBus:
    """One process: every event is published here, so ``here`` changes nothing."""

    def __init__(self) -> None:
        self._subscribers: dict[type[Event] | None, list[Subscriber]] = defaultdict(list)
        self.failures = 0

    @overload
    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None]], *, here: bool = False
    ) -> Unsubscribe: ...
    @overload
    def subscribe(self, event_type: None, handler: Subscriber, *, here: bool = False) -> Unsubscribe: ...
    def subscribe(
        self, event_type: type[E] | None, handler: Callable[[E], Awaitable[None]], *, here: bool = False
    ) -> Unsubscribe:
        # Sound: publish hands a subscriber only events of the type it subscribed to.
        subscriber = cast(Subscriber, handler)
        self._subscribers[event_type].append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers[event_type]:
                self._subscribers[event_type].remove(subscriber)

        return unsubscribe

    async def publish(self, event: Event) -> None:
        handlers = [*self._subscribers.get(type(event), ()), *self._subscribers.get(None, ())]
        if not handlers:
            return
        if len(handlers) == 1:  # the common case: no task, no gather
            try:
                await handlers[0](event)
            except Exception as err:
                self._failed(handlers[0], event, err)
            return
        results = await asyncio.gather(*(h(event) for h in handlers), return_exceptions=True)
        for handler, result in zip(handlers, results):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                self._failed(handler, event, result)

    def _failed(self, handler: Subscriber, event: Event, error: BaseException) -> None:
        self.failures += 1
        log.error("subscriber %s failed on %s", getattr(handler, "__qualname__", handler), event.name, exc_info=error)


# Seconds between attempts to subscribe again after Redis went away.
RESUBSCRIBE_MIN, RESUBSCRIBE_MAX = 0.1, 5.0


class RedisBus:
    """Fans events out to every hub instance through Redis pub/sub.

    ``publish`` sends the event to Redis; each instance's listener delivers
    what arrives to its local subscribers (including the publisher's own), so
    a subscriber runs once per instance; one subscribed ``here`` is called
    by ``publish`` itself, on the publishing instance only (and even while
    Redis is away). Redis pub/sub is at-most-once: use
    it for notifications (live chat pushes, Slack mirrors), never as the only
    record of work — that lives in the database (outbox, tickets). After
    Redis restarts, the listener subscribes again by itself (what was
    published in between is lost, as any at-most-once notification may be).
    """

    def __init__(self, url: str, channel: str = "servicehub:events", *, startup_wait: float = 10.0) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._channel = channel
        self._local = LocalBus()  # subscribers on every instance: fed by the listener
        self._here = LocalBus()  # subscribers to this instance's own events: fed by publish
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.startup_wait = startup_wait
        self.subscribed = False
        self.unpublished = 0  # events dropped because Redis was away

    @property
    def failures(self) -> int:
        return self._local.failures + self._here.failures

    @overload
    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None]], *, here: bool = False
    ) -> Unsubscribe: ...
    @overload
    def subscribe(self, event_type: None, handler: Subscriber, *, here: bool = False) -> Unsubscribe: ...
    def subscribe(
        self, event_type: type[E] | None, handler: Callable[[E], Awaitable[None]], *, here: bool = False
    ) -> Unsubscribe:
        bus = self._here if here else self._local
        if event_type is None:
            return bus.subscribe(None, cast(Subscriber, handler))
        return bus.subscribe(event_type, handler)

    async def publish(self, event: Event) -> None:
        """Never raises because Redis is away: the event only notifies (its
        work is committed already), so it is dropped with a warning rather
        than failing the request or job that caused it."""
        import json

        from redis.exceptions import RedisError

        from hub.events import to_json

        await self._here.publish(event)
        try:
            await self._redis.publish(self._channel, json.dumps(to_json(event)))
        except (RedisError, OSError) as err:
            self.unpublished += 1
            log.warning("Redis bus could not publish %s (%s); dropped", event.name, type(err).__name__)

    async def start(self) -> None:
        """Subscribe; wait ``startup_wait`` s at most. An instance starting
        while Redis restarts carries on without it (what it publishes is
        dropped, as during any outage) and subscribes when Redis is back;
        /readyz shows the bus degraded until then."""
        self._task = asyncio.create_task(self._listen(), name="redis-bus")
        try:
            async with asyncio.timeout(self.startup_wait):
                await self._ready.wait()
        except TimeoutError:
            log.warning("Redis bus: Redis is not answering; starting without it, subscribing when it does")

    def health(self) -> dict[str, Any]:
        return {"ok": True} if self.subscribed else {"ok": False, "error": "not subscribed on Redis"}

    async def _listen(self) -> None:
        """Deliver what arrives; when Redis goes away (a restart drops every
        subscription), subscribe again, with a backoff, for as long as the bus runs."""
        from redis.exceptions import RedisError

        delay = RESUBSCRIBE_MIN
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                if self._ready.is_set():
                    log.warning("Redis bus subscribed again; events published meanwhile were not received")
                self._ready.set()
                self.subscribed = True
                delay = RESUBSCRIBE_MIN
                async for message in pubsub.listen():
                    await self._deliver(message)
            except (RedisError, OSError) as err:
                self.subscribed = False
                log.warning("Redis bus lost its subscription (%s); again in %.1f s", type(err).__name__, delay)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass  # the connection is gone already
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX)

    async def _deliver(self, message: dict[str, Any]) -> None:
        import json

        from hub.events import from_json

        if message.get("type") != "message":
            return
        payload: Any = None
        try:
            payload = json.loads(message["data"])
            event = from_json(payload)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            # What was wrong, never the data: a message's event carries the customer's text.
            name = payload.get("name") if isinstance(payload, dict) else None
            log.warning("dropping malformed event %r from Redis: %s", name, f"{type(err).__name__}: {err}"[:200])
            return
        await self._local.publish(event)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self._redis.aclose()
