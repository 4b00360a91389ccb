"""Every typed ``web.AppKey`` of the hub's services, in one place.

The annotations carry the types (``app[keys.TICKETS]`` is a ``TicketService``
to the type checker); the classes are imported for the checker only, because
the services import this module to find each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from hub.auth import TokenAuthenticator
    from hub.automation.service import Automation
    from hub.bot.bridge import BotBridge
    from hub.bot.model import BotModelWatcher
    from hub.bot.supervisor import ChildProcess
    from hub.bot.triage import Triage
    from hub.bus import EventBus
    from hub.canned.service import CannedReplies
    from hub.config import Settings
    from hub.console.dashboard import SharedRuns
    from hub.console.live import LiveFeed
    from hub.conversations.outbox import OutboxWorker
    from hub.conversations.service import HubService
    from hub.csat import CsatService
    from hub.events import Clock
    from hub.kb.searchlog import SearchLog
    from hub.kb.suggestions import PhrasingSuggestions
    from hub.messages import ChannelAdapter
    from hub.metrics import Metrics
    from hub.ratelimit import RateLimiter
    from hub.reports.service import ReportService
    from hub.slack.desk import SlackDesk
    from hub.storage import Database
    from hub.tickets.service import TicketService
    from hub.webhooks.service import Webhooks
    from knowledge_base import KnowledgeBase

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
# Where services read the time for their transactions; tests pass one they move.
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
DATABASE: web.AppKey[Database] = web.AppKey("database")
BUS: web.AppKey[EventBus] = web.AppKey("bus")
CHANNELS: web.AppKey[dict[str, ChannelAdapter]] = web.AppKey("channels")
SERVICE: web.AppKey[HubService] = web.AppKey("service")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
OUTBOX: web.AppKey[OutboxWorker] = web.AppKey("outbox")
AUTH: web.AppKey[TokenAuthenticator] = web.AppKey("auth")
TICKETS: web.AppKey[TicketService] = web.AppKey("tickets")
# Agents' reply templates (hub.canned).
CANNED_REPLIES: web.AppKey[CannedReplies] = web.AppKey("canned_replies")
# Automation rules: matched with their events, run by a worker (hub.automation).
AUTOMATION: web.AppKey[Automation] = web.AppKey("automation")
# Satisfaction surveys on resolve and their answers (hub.csat).
CSAT: web.AppKey[CsatService] = web.AppKey("csat")
# Outgoing webhooks: the tx hooks and the sender (hub.webhooks).
WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("webhooks")
# Only while the ``slack`` channel is enabled.
SLACK_DESK: web.AppKey[SlackDesk] = web.AppKey("slack_desk")
# Only while the knowledge base is enabled (hub.kb.setup).
KNOWLEDGE_BASE: web.AppKey[KnowledgeBase] = web.AppKey("knowledge_base")
# Per-client limits of the knowledge base's public search.
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
# New article phrasings offered to an admin (hub.kb.suggestions).
PHRASINGS: web.AppKey[PhrasingSuggestions] = web.AppKey("phrasings")
# Portal searches and bot lookups, for the content-gaps report (hub.kb.searchlog).
SEARCH_LOG: web.AppKey[SearchLog] = web.AppKey("search_log")
# Only while a bot runs (hub.bot.setup): the bridge, the child processes the hub
# started (Rasa, the action server), and the watcher that retrains Rasa's NLU.
BOT_BRIDGE: web.AppKey[BotBridge] = web.AppKey("bot_bridge")
BOT_PROCESSES: web.AppKey[list[ChildProcess]] = web.AppKey("bot_processes")
BOT_MODEL: web.AppKey[BotModelWatcher] = web.AppKey("bot_model")
# The triage of each message before the bot sees it (urgency signals; hub.bot.triage).
BOT_TRIAGE: web.AppKey[Triage] = web.AppKey("bot_triage")
# The console's live feed: bus events, fanned out to its SSE streams (hub.console.live).
CONSOLE_LIVE: web.AppKey[LiveFeed] = web.AppKey("console_live")
# The console dashboard's runs of the reports, shared by dashboards asking at once (hub.console.dashboard).
DASHBOARD_RUNS: web.AppKey[SharedRuns] = web.AppKey("dashboard_runs")

# The reports over the timeline (hub.reports).
REPORTS: web.AppKey[ReportService] = web.AppKey("reports")
# Components report their health here: name -> (ok, detail).
HEALTH: web.AppKey[dict[str, Any]] = web.AppKey("health")

__all__ = [
    "AUTH",
    "AUTOMATION",
    "BOT_BRIDGE",
    "BOT_MODEL",
    "BOT_PROCESSES",
    "BOT_TRIAGE",
    "BUS",
    "CANNED_REPLIES",
    "CHANNELS",
    "CLOCK",
    "CONSOLE_LIVE",
    "CSAT",
    "DASHBOARD_RUNS",
    "DATABASE",
    "HEALTH",
    "KNOWLEDGE_BASE",
    "METRICS",
    "OUTBOX",
    "PHRASINGS",
    "RATE_LIMITER",
    "REPORTS",
    "SEARCH_LOG",
    "SERVICE",
    "SETTINGS",
    "SLACK_DESK",
    "TICKETS",
    "WEBHOOKS",
]
