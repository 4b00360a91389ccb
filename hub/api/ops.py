"""Liveness, readiness, Prometheus metrics and the OpenAPI document (as
``hub.api.schema`` completes it: what the API validates is what it serves)."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import keys
from hub.api.base import public
from hub.api.schema import openapi_document
from hub.conversations.outbox import OUTBOX
from hub.errors import Unauthorized

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers; degraded components are reported, not fatal."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        await asyncio.wait_for(request.app[keys.DATABASE].ping(), 2)
        checks["database"] = {"ok": True}
    except Exception as err:
        ready = False
        checks["database"] = {"ok": False, "error": type(err).__name__}
    degraded = []
    for name, probe in request.app[keys.HEALTH].items():
        state = probe()
        checks[name] = state
        if not state.get("ok", False):
            degraded.append(name)
    status = "ready" if ready and not degraded else ("degraded" if ready else "unavailable")
    return web.json_response({"status": status, "degraded": degraded, "checks": checks}, status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; behind ``Authorization: Bearer $HUB_METRICS_TOKEN`` when that is set."""
    token = request.app[keys.SETTINGS].metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise Unauthorized("metrics need the metrics token")
    registry = request.app[keys.METRICS]
    try:
        counts = await request.app[keys.DATABASE].read(OUTBOX.depth)
        for status, count in counts.items():
            registry.outbox_depth.labels(status).set(count)
    except Exception:
        pass
    body = generate_latest(registry.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/v1/openapi.json")
@public
async def openapi(request: web.Request) -> web.Response:
    document = dict(openapi_document())
    document["servers"] = [{"url": request.app[keys.SETTINGS].public_url}]
    return web.json_response(document)
