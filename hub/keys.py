"""Every typed ``web.AppKey`` of the hub, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", "Settings")
DATABASE = web.AppKey("database", "Database")
BUS = web.AppKey("bus", "EventBus")
CHANNELS = web.AppKey("channels", "dict[str, Channel]")
SERVICE = web.AppKey("service", "HubService")
METRICS = web.AppKey("metrics", "Metrics")
OUTBOX = web.AppKey("outbox", "OutboxWorker")
AUTH = web.AppKey("auth", "TokenAuthenticator")
# New article phrasings offered to an admin (hub.kb.suggestions).
PHRASINGS = web.AppKey("phrasings", "PhrasingSuggestions")
# Components report their health here: name -> (ok, detail).
HEALTH = web.AppKey("health", "dict[str, Any]")
# Extra cleanup contexts/components registered by optional packages.
EXTRAS = web.AppKey("extras", "dict[str, Any]")

__all__ = [
    "AUTH",
    "BUS",
    "CHANNELS",
    "DATABASE",
    "EXTRAS",
    "HEALTH",
    "METRICS",
    "OUTBOX",
    "PHRASINGS",
    "SERVICE",
    "SETTINGS",
    "Any",
]
