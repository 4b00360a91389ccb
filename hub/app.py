"""``create_app(settings)``: routes, middleware and cleanup contexts in start order.

This is the only module that knows every package.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from channels.base import Channel, RelaysPushes
from channels.registry import build_channels
from hub import keys
from hub.api import admin, contacts, conversations, ops
from hub.api import automation as automation_api
from hub.api import canned as canned_api
from hub.api import jobs as jobs_api
from hub.api import kb_suggestions as kb_suggestions_api
from hub.api import reports as reports_api
from hub.api import tickets as tickets_api
from hub.api import webhooks as webhooks_api
from hub.api.middleware import auth_middleware, error_middleware, observe_middleware, security_headers
from hub.api.schema import schema_middleware
from hub.attachments import AttachmentStore
from hub.auth import TokenAuthenticator
from hub.automation.service import automation_ctx
from hub.bot import model as bot_model
from hub.bot.setup import setup_bot
from hub.bus import LocalBus, RedisBus
from hub.canned.service import canned_replies_ctx
from hub.config import Settings
from hub.console import setup_console
from hub.conversations.outbox import OutboxWorker
from hub.conversations.service import HubService
from hub.csat import csat_ctx
from hub.csat_links import routes as csat_link_routes
from hub.events import Clock
from hub.kb.searchlog import search_log_ctx
from hub.kb.setup import build_knowledge_base, setup_knowledge_base
from hub.kb.suggestions import suggestions_ctx
from hub.leases import NamedLeases, new_holder
from hub.messages import ChannelAdapter
from hub.metrics import Metrics
from hub.proxy import TrustedProxies, parse_networks, proxy_middleware
from hub.relay import RedisPushRelay
from hub.reports.service import reports_ctx
from hub.slack.desk import slack_desk_ctx
from hub.storage import open_database
from hub.tickets.service import tickets_ctx
from hub.webhooks.service import webhooks_ctx
from knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)


_FROM_SETTINGS: Any = object()


# Objects made before serving (modules, settings, the app, its clients) live
# as long as the process: frozen, the collector stops walking them. A larger
# first generation collects less often; request garbage is acyclic and goes
# by reference counting anyway. About 4 % of the ingest path's CPU, and no
# more 60 ms full collections in the middle of traffic.
GC_THRESHOLDS = (20_000, 20, 20)


def freeze_after_startup(app: web.Application) -> None:
    """For a serving process (``hub serve``): once the app has started, move
    everything alive to the collector's permanent generation and collect
    less often. Not for tests, which start many apps in one process."""

    async def freeze(_: web.Application) -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    app.on_startup.append(freeze)


def create_app(
    settings: Settings,
    *,
    channels: dict[str, Channel] | None = None,
    knowledge_base: KnowledgeBase | None = _FROM_SETTINGS,
    clock: Clock | None = None,
) -> web.Application:
    """The hub. ``channels`` and ``knowledge_base`` replace what the settings
    would build (tests pass fakes; ``knowledge_base=None`` disables it);
    ``clock`` is where the ticket service reads the time (tests move it)."""
    middlewares: list[Middleware] = [observe_middleware, error_middleware, auth_middleware, schema_middleware]
    if settings.trusted_proxies.strip():
        # After the errors' middleware (a malformed chain is a JSON 400), before anything reads the client.
        trusted = TrustedProxies(parse_networks(settings.trusted_proxies), settings.trusted_proxy_headers)
        middlewares.insert(2, proxy_middleware(trusted))
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app.on_response_prepare.append(security_headers)
    app[keys.SETTINGS] = settings
    app[keys.CLOCK] = clock or Clock()
    app[keys.METRICS] = Metrics()
    bus = (
        RedisBus(settings.redis_url, f"{settings.redis_prefix}:events", startup_wait=settings.redis_startup_wait)
        if settings.redis_url
        else LocalBus()
    )
    app[keys.BUS] = bus
    built: dict[str, Channel] = channels if channels is not None else build_channels(settings)
    adapters: dict[str, ChannelAdapter] = dict(built)
    app[keys.CHANNELS] = adapters
    app[keys.HEALTH] = {}
    if isinstance(bus, RedisBus):
        app[keys.HEALTH]["redis"] = bus.health

    app.add_routes(ops.routes)
    app.add_routes(contacts.routes)
    app.add_routes(conversations.routes)
    app.add_routes(admin.routes)
    app.add_routes(jobs_api.routes)
    setup_knowledge_base(app, build_knowledge_base(settings) if knowledge_base is _FROM_SETTINGS else knowledge_base)
    app.add_routes(kb_suggestions_api.routes)
    app.add_routes(tickets_api.routes)
    app.add_routes(canned_api.routes)
    app.add_routes(automation_api.routes)
    app.add_routes(webhooks_api.routes)
    app.add_routes(bot_model.routes)
    app.add_routes(reports_api.routes)
    app.add_routes(csat_link_routes)  # e-mail surveys' one-click rating links
    for channel in built.values():
        app.add_routes(channel.routes())
        if hasattr(channel, "on_shutdown"):
            # Close long-lived sockets first, or aiohttp waits for them to end.
            app.on_shutdown.append(channel.on_shutdown)
    setup_console(app)  # the agents' web console at /console (after the limiter: it uses it)

    # Start order; aiohttp tears them down in reverse.
    app.cleanup_ctx.append(bus_ctx)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(service_ctx)
    app.cleanup_ctx.append(webhooks_ctx)  # its hooks before anything produces events; drained last
    app.cleanup_ctx.append(canned_replies_ctx)
    app.cleanup_ctx.append(suggestions_ctx)
    app.cleanup_ctx.append(search_log_ctx)  # portal searches and bot lookups (content gaps)
    for channel in built.values():
        app.cleanup_ctx.append(channel.lifespan)
    app.cleanup_ctx.append(push_relay_ctx)  # before the outbox: its sends reach other instances' sockets
    app.cleanup_ctx.append(outbox_ctx)
    app.cleanup_ctx.append(tickets_ctx)
    app.cleanup_ctx.append(csat_ctx)
    app.cleanup_ctx.append(automation_ctx)  # rules matched with their events (after tickets, canned replies)
    app.cleanup_ctx.append(reports_ctx)
    app.cleanup_ctx.append(slack_desk_ctx)
    app.cleanup_ctx.append(duty_roster_ctx)
    setup_bot(app)  # last: it answers customers through everything above
    return app


async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
    bus = app[keys.BUS]
    if not isinstance(bus, RedisBus):
        yield
        return
    await bus.start()
    try:
        yield
    finally:
        await bus.close()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = open_database(app[keys.SETTINGS].database_url)
    app[keys.DATABASE] = db
    app[keys.AUTH] = TokenAuthenticator(db)
    try:
        yield
    finally:
        await db.close()


async def service_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    store = AttachmentStore(
        app[keys.DATABASE], settings.data_dir / "attachments", max_bytes=settings.attachment_max_bytes
    )
    # This instance's leases: the channels' loops (each IMAP folder) and the periodic sweeps.
    leases = NamedLeases(
        app[keys.DATABASE], holder=new_holder(), seconds=settings.lease_seconds, now=app[keys.CLOCK].now
    )
    service = HubService(
        app[keys.DATABASE],
        app[keys.BUS],
        app[keys.CHANNELS],
        app[keys.METRICS],
        reopen_window=timedelta(hours=settings.reopen_window_hours),
        agents_online=settings.webchat_agents_online != "false",
        attachments=store,
        leases=leases,
        # The Rasa bridge answers durable bot jobs: written from the first
        # message on, even one the SMTP server takes before the bridge starts.
        bot_jobs=settings.bot == "rasa",
    )
    app[keys.SERVICE] = service
    for channel in app[keys.CHANNELS].values():
        channel.bind(service)
    async with store.sweeping(lease=leases.lease("attachment-sweep")):
        yield


async def duty_roster_ctx(app: web.Application) -> AsyncIterator[None]:
    """The channels' "agents online" (``ChannelHost.agents_online``) follows
    the duty roster under HUB_WEBCHAT_AGENTS_ONLINE=auto."""
    if app[keys.SETTINGS].webchat_agents_online == "auto":
        app[keys.SERVICE].use_duty_roster(app[keys.TICKETS].anyone_on_duty)
    yield


async def push_relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """With HUB_REDIS_URL, a channel's pushes reach the sockets every
    instance holds (``hub.relay``); without, the channel stays local."""
    settings = app[keys.SETTINGS]
    relayed: list[RelaysPushes] = [c for c in app[keys.CHANNELS].values() if isinstance(c, RelaysPushes)]
    if not settings.redis_url or not relayed:
        yield
        return
    relays: list[tuple[RelaysPushes, RedisPushRelay]] = []
    try:
        for channel in relayed:
            relay = RedisPushRelay(
                settings.redis_url,
                channel.push_local,
                on_gap=channel.resync,
                channel=f"{settings.redis_prefix}:{channel.name}",
                startup_wait=settings.redis_startup_wait,
            )
            await relay.start()
            relays.append((channel, relay))
            channel.use_relay(relay)
            app[keys.HEALTH][f"redis_relay_{channel.name}"] = relay.health
        yield
    finally:
        for channel, relay in reversed(relays):
            channel.use_relay(None)
            await relay.close()


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    worker = OutboxWorker(
        app[keys.DATABASE],
        app[keys.CHANNELS],
        app[keys.BUS].publish,
        tx_hooks=app[keys.SERVICE].tx_hooks,
        chat_link=settings.webchat_page_url or f"{settings.public_url.rstrip('/')}/demo",
        max_attempts=settings.outbox_max_attempts,
        base_delay=settings.outbox_base_delay,
        max_delay=settings.outbox_max_delay,
        lease_seconds=settings.outbox_lease_seconds,
        concurrency=settings.outbox_concurrency,
        poll_interval=settings.outbox_poll_interval,
        on_result=app[keys.METRICS].delivery_result,
    )
    app[keys.OUTBOX] = worker
    app[keys.SERVICE].on_outbound_queued(worker.notify)
    worker.start()
    try:
        yield
    finally:
        # Graceful shutdown: stop claiming, drain what is in flight.
        await worker.stop()
