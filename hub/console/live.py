"""Live updates for the console: ``GET /console/events``, a Server-Sent Events stream.

The feed subscribes to the hub's event bus (with ``HUB_REDIS_URL`` the Redis
bus, so a change made through another hub instance reaches this one) and
tells every connected console *which* conversation changed and *what kind*
of change it was, never its content: no text, no name, no address, no field
value. A page re-reads what it shows through its own authorised route (the
inbox's ``/console/inbox/rows``), so a stream can never leak more than the
reader may see, and the stream needs no per-user filter (every console user
may read every conversation: viewers included).

Every event is ``event: change`` with an ``id`` and a JSON ``data`` object:

    {"conversation_id": 12, "what": "message", "direction": "inbound", "new": true, "message_id": 99}
        a customer's message was stored ("new": it opened the conversation)
    {"conversation_id": 12, "what": "message", "direction": "outbound", "message_id": 100}
        a reply (agent or bot) was queued
    {"conversation_id": 12, "what": "note", "message_id": 101}
    {"conversation_id": 12, "what": "event", "message_id": 102}   a system line on the timeline
    {"conversation_id": 12, "what": "delivery", "message_id": 100, "status": "delivered"}
    {"conversation_id": 12, "what": "conversation", "fields": ["assignee_id", "status"]}
        status, priority, assignee (a claim), handler or subject changed
    {"conversation_id": 12, "what": "ticket", "fields": ["opened"]}   a handoff opened a ticket
    {"conversation_id": 12, "what": "ticket", "fields": ["priority", "sla"]}   a ticket changed
    {"conversation_id": 12, "what": "sla", "target": "first_response"}   an SLA was breached
    {"contact_id": 7, "what": "contact", "change": "erased" | "merged", "into": 8}
        a contact's conversations went away (erased) or moved (merged into 8)

Besides ``change``:

- ``event: hello`` first, with ``{"id": ...}``: the stream is live (and
  ``retry: 3000``, how long a browser waits before reconnecting);
- ``event: resync``: what happened while the reader was away cannot be
  replayed (the ``Last-Event-ID`` it reconnected with is from another
  instance, a restart, or too long ago): re-read the page;
- a ``: ping`` comment every 15 s, so proxies keep the connection and a
  dead one is noticed.

Ids are ``<instance>.<sequence>``: a browser reconnecting with
``Last-Event-ID`` (``EventSource`` does it by itself) to the same instance
gets the events it missed, from the last ``HISTORY`` kept. On shutdown every
stream ends at once (``on_shutdown``), so the hub never waits for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from hub import keys
from hub.bus import EventBus
from hub.console.sessions import require_user
from hub.events import (
    ContactErased,
    ContactsMerged,
    ConversationUpdated,
    DeliveryUpdated,
    Event,
    MessageQueued,
    MessageReceived,
    NoteAdded,
    SlaBreached,
    SystemEventAdded,
    TicketChanged,
    TicketOpened,
)

log = logging.getLogger(__name__)

HISTORY = 2000  # events kept for readers who reconnect
RETRY_MS = 3000
HEARTBEAT_SECONDS = 15.0
BACKLOG = 500  # events queued for one slow reader before it is told to resync
EVENTS_PATH = "/console/events"


def describe(event: Event) -> dict[str, Any] | None:
    """The event as a console sees it: ids and kinds, never content."""
    if isinstance(event, MessageReceived):
        return {
            "conversation_id": event.conversation_id,
            "what": "message",
            "direction": "inbound",
            "new": event.new_conversation,
            "message_id": event.message_id,
        }
    if isinstance(event, MessageQueued):
        return {
            "conversation_id": event.conversation_id,
            "what": "message",
            "direction": "outbound",
            "message_id": event.message_id,
        }
    if isinstance(event, NoteAdded):
        return {"conversation_id": event.conversation_id, "what": "note", "message_id": event.message_id}
    if isinstance(event, SystemEventAdded):
        return {"conversation_id": event.conversation_id, "what": "event", "message_id": event.message_id}
    if isinstance(event, DeliveryUpdated):
        return {
            "conversation_id": event.conversation_id,
            "what": "delivery",
            "message_id": event.message_id,
            "status": event.status,
        }
    if isinstance(event, ConversationUpdated):
        return {"conversation_id": event.conversation_id, "what": "conversation", "fields": sorted(event.changes)}
    if isinstance(event, TicketOpened):
        return {"conversation_id": event.conversation_id, "what": "ticket", "fields": ["opened"]}
    if isinstance(event, TicketChanged):
        return {"conversation_id": event.conversation_id, "what": "ticket", "fields": sorted(event.changes)}
    if isinstance(event, SlaBreached):
        return {"conversation_id": event.conversation_id, "what": "sla", "target": event.target}
    if isinstance(event, ContactErased):
        return {"contact_id": event.contact_id, "what": "contact", "change": "erased"}
    if isinstance(event, ContactsMerged):
        return {"contact_id": event.source_id, "what": "contact", "change": "merged", "into": event.target_id}
    return None


SUBSCRIBED: tuple[type[Event], ...] = (
    MessageReceived,
    MessageQueued,
    NoteAdded,
    SystemEventAdded,
    DeliveryUpdated,
    ConversationUpdated,
    TicketOpened,
    TicketChanged,
    SlaBreached,
    ContactErased,
    ContactsMerged,
)


@dataclass(frozen=True, slots=True)
class Sent:
    seq: int
    data: str  # the JSON text

    def id(self, instance: str) -> str:
        return f"{instance}.{self.seq}"


# A reader's queue holds events, RESYNC (it fell behind) or CLOSE (shutdown).
RESYNC = Sent(-1, "")
CLOSE = Sent(-2, "")


class LiveFeed:
    """The bus, fanned out to this instance's connected consoles."""

    def __init__(self, bus: EventBus, *, history: int = HISTORY, backlog: int = BACKLOG) -> None:
        self.bus = bus
        self.instance = secrets.token_hex(4)
        self.seq = 0
        self.recent: deque[Sent] = deque(maxlen=history)
        self.readers: set[asyncio.Queue[Sent]] = set()
        self.backlog = backlog
        self.closed = False
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self) -> None:
        self._unsubscribe = [self.bus.subscribe(kind, self._on_event) for kind in SUBSCRIBED]

    def stop(self) -> None:
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []
        self.close_streams()

    def close_streams(self) -> None:
        self.closed = True
        for reader in list(self.readers):
            self._put(reader, CLOSE, force=True)

    async def _on_event(self, event: Event) -> None:
        described = describe(event)
        if described is not None:
            self.publish(described)

    def publish(self, described: dict[str, Any]) -> None:
        self.seq += 1
        sent = Sent(self.seq, json.dumps(described, separators=(",", ":")))
        self.recent.append(sent)
        for reader in list(self.readers):
            self._put(reader, sent)

    def _put(self, reader: asyncio.Queue[Sent], sent: Sent, *, force: bool = False) -> None:
        if reader.qsize() >= self.backlog and not force:
            # Too far behind: drop what it has queued, tell it to re-read.
            while not reader.empty():
                reader.get_nowait()
            reader.put_nowait(RESYNC)
            return
        reader.put_nowait(sent)

    def connect(self, last_event_id: str | None) -> asyncio.Queue[Sent]:
        """A queue of what this reader gets, starting with what it missed
        since ``last_event_id`` (or a RESYNC when that cannot be told)."""
        reader: asyncio.Queue[Sent] = asyncio.Queue()
        if last_event_id:
            for sent in self._since(last_event_id):
                reader.put_nowait(sent)
        if self.closed:
            reader.put_nowait(CLOSE)
        self.readers.add(reader)
        return reader

    def _since(self, last_event_id: str) -> list[Sent]:
        instance, _, seq_text = last_event_id.partition(".")
        if instance != self.instance or not seq_text.isdigit():
            return [RESYNC]
        seq = int(seq_text)
        if seq >= self.seq:
            return []
        oldest = self.recent[0].seq if self.recent else self.seq + 1
        if seq + 1 < oldest:
            return [RESYNC]
        return [sent for sent in self.recent if sent.seq > seq]

    def disconnect(self, reader: asyncio.Queue[Sent]) -> None:
        self.readers.discard(reader)

    @property
    def last_id(self) -> str:
        return f"{self.instance}.{self.seq}"


async def events(request: web.Request) -> web.StreamResponse:
    await require_user(request)
    feed = request.app[keys.CONSOLE_LIVE]
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    reader = feed.connect(last[:64] if last else None)
    response = EventSourceResponse(
        ping_interval=HEARTBEAT_SECONDS, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    try:
        await response.prepare(request)
        async with response:  # on the way out: the heartbeat stops
            await response.send(json.dumps({"id": feed.last_id}), event="hello", retry=RETRY_MS, id=feed.last_id)
            await _follow(response, reader, feed)
    except ConnectionResetError:
        pass  # the reader left while we wrote
    except asyncio.CancelledError:
        # A server that cancels handlers when their client leaves (aiohttp's
        # handler_cancellation) ends a stream this way: a normal end, not a
        # failure to log. Any other cancellation goes on.
        task = asyncio.current_task()
        if (request.transport is not None and not request.transport.is_closing()) or task is None:
            raise
        task.uncancel()
    finally:
        feed.disconnect(reader)
    return response


async def _follow(response: EventSourceResponse, reader: asyncio.Queue[Sent], feed: LiveFeed) -> None:
    """Send what the feed queues until shutdown or until the heartbeat finds the reader gone."""
    gone = asyncio.ensure_future(response.wait())
    following: asyncio.Future[Sent] | None = None
    try:
        while True:
            following = asyncio.ensure_future(reader.get())
            done, _ = await asyncio.wait({following, gone}, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                return
            sent = following.result()
            if sent is CLOSE:
                return
            if sent is RESYNC:
                await response.send("{}", event="resync", id=feed.last_id)
            else:
                await response.send(sent.data, event="change", id=sent.id(feed.instance))
    finally:
        for waiting in (following, gone):
            if waiting is not None and not waiting.done():
                waiting.cancel()


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    feed = LiveFeed(app[keys.BUS])
    app[keys.CONSOLE_LIVE] = feed
    feed.start()
    try:
        yield
    finally:
        feed.stop()


async def end_streams(app: web.Application) -> None:
    """``on_shutdown``: end every stream now, or aiohttp waits for them."""
    feed = app.get(keys.CONSOLE_LIVE)
    if feed is not None:
        feed.close_streams()


def setup_live(app: web.Application) -> None:
    app.router.add_get(EVENTS_PATH, events, name="console_events")
    app.cleanup_ctx.append(live_ctx)
    app.on_shutdown.append(end_streams)
