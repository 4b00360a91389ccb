"""Outgoing webhooks for an admin: endpoints (create, list, read, change,
delete, rotate the secret), their deliveries (list, redeliver) and a ping.
Every change is audited; a secret is shown once, when it is made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from hub import keys
from hub.api.base import BODY, audit_entry, int_param, json_body, path_id, requires
from hub.audit import audited
from hub.errors import InvalidInput
from hub.events import utcnow
from hub.jobs.queue import DEAD, PENDING
from hub.models import Role
from hub.webhooks import store
from hub.webhooks.store import DELIVERED, PING, SENDING

routes = web.RouteTableDef()
STATUSES = (PENDING, SENDING, DELIVERED, DEAD)


def _allow_private(request: web.Request) -> bool:
    return request.app[keys.SETTINGS].webhook_allow_private


def _wake(request: web.Request) -> None:
    webhooks = request.app.get(keys.WEBHOOKS)
    if webhooks is not None:
        webhooks.sender.notify()


def _with_secret(endpoint: store.Endpoint, secret: str) -> dict[str, Any]:
    return {**endpoint.to_dict(), "secret": secret}


@routes.get("/api/v1/webhooks")
@requires(Role.ADMIN)
async def list_endpoints(request: web.Request) -> web.Response:
    found = await request.app[keys.DATABASE].read(store.list_endpoints)
    return web.json_response(
        {"items": [endpoint.to_dict() for endpoint in found], "event_types": list(store.EVENT_TYPES)}
    )


@routes.post("/api/v1/webhooks")
@requires(Role.ADMIN)
async def create_endpoint(request: web.Request) -> web.Response:
    body = await json_body(request)
    allow_private = _allow_private(request)
    endpoint, secret = await request.app[keys.DATABASE].write(
        audited(
            lambda conn: store.create_endpoint(conn, body, allow_private=allow_private, now=utcnow()),
            audit_entry(request, "webhook.create", "webhook"),
            lambda made: {"target_id": made[0].id, "events": made[0].events},
        )
    )
    return web.json_response(_with_secret(endpoint, secret), status=201)


@routes.get("/api/v1/webhooks/{id}")
@requires(Role.ADMIN)
async def get_endpoint(request: web.Request) -> web.Response:
    endpoint = await request.app[keys.DATABASE].read(store.get_endpoint, path_id(request))
    return web.json_response(endpoint.to_dict())


@routes.patch("/api/v1/webhooks/{id}")
@requires(Role.ADMIN)
async def update_endpoint(request: web.Request) -> web.Response:
    body = await json_body(request)
    endpoint_id = path_id(request)
    allow_private = _allow_private(request)
    endpoint = await request.app[keys.DATABASE].write(
        audited(
            lambda conn: store.update_endpoint(conn, endpoint_id, body, allow_private=allow_private, now=utcnow()),
            audit_entry(request, "webhook.update", "webhook", endpoint_id, fields=sorted(body)),
        )
    )
    return web.json_response(endpoint.to_dict())


@routes.delete("/api/v1/webhooks/{id}")
@requires(Role.ADMIN)
async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request)
    await request.app[keys.DATABASE].write(
        audited(store.delete_endpoint, audit_entry(request, "webhook.delete", "webhook", endpoint_id)), endpoint_id
    )
    return web.Response(status=204)


@routes.post("/api/v1/webhooks/{id}/rotate-secret")
@requires(Role.ADMIN)
async def rotate_secret(request: web.Request) -> web.Response:
    """A new secret (given, or generated), shown this once; with
    ``grace_seconds`` the old one keeps signing beside it that long."""
    body = request.get(BODY) or {}  # optional: checked by the document when given
    endpoint_id = path_id(request)
    grace = body.get("grace_seconds", 0)
    if isinstance(grace, bool) or not isinstance(grace, int):
        raise InvalidInput("'grace_seconds' must be a whole number of seconds", details={"field": "grace_seconds"})
    endpoint, secret = await request.app[keys.DATABASE].write(
        audited(
            lambda conn: store.rotate_secret(
                conn, endpoint_id, secret=body.get("secret"), grace=timedelta(seconds=grace), now=utcnow()
            ),
            audit_entry(request, "webhook.rotate_secret", "webhook", endpoint_id, grace_seconds=grace),
        )
    )
    return web.json_response(_with_secret(endpoint, secret))


@routes.get("/api/v1/webhooks/{id}/deliveries")
@requires(Role.ADMIN)
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first; ``status`` filters, ``limit`` (1-500, 50) bounds."""
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", details={"field": "status"})
    limit = int_param(request, "limit", default=50, hi=500)
    endpoint_id = path_id(request)
    found = await request.app[keys.DATABASE].read(
        lambda conn: store.list_deliveries(conn, endpoint_id, status=status, limit=limit)
    )
    return web.json_response({"items": found})


@routes.post("/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver")
@requires(Role.ADMIN)
async def redeliver(request: web.Request) -> web.Response:
    """A delivered or dead delivery goes again, with the same delivery id (409 while it is on its way)."""
    endpoint_id, delivery_id = path_id(request), path_id(request, "delivery_id")
    delivery = await request.app[keys.DATABASE].write(
        audited(
            lambda conn: store.redeliver(conn, endpoint_id, delivery_id, utcnow()),
            audit_entry(request, "webhook.redeliver", "webhook", endpoint_id, delivery_id=delivery_id),
        )
    )
    _wake(request)
    return web.json_response(delivery, status=202)


@routes.post("/api/v1/webhooks/{id}/ping")
@requires(Role.ADMIN)
async def ping(request: web.Request) -> web.Response:
    """A ``ping`` event to the endpoint (even a disabled one), to test the receiver."""
    endpoint_id = path_id(request)

    def queue(conn: Any) -> dict[str, Any]:
        store.get_endpoint(conn, endpoint_id)
        now = utcnow()
        event_key = store.new_event_key(PING)
        delivery_id = store.enqueue_delivery(
            conn, endpoint_id, PING, {"endpoint_id": endpoint_id}, event_key=event_key, now=now
        )
        assert delivery_id is not None, "a new event key is never taken"
        return store.get_delivery(conn, endpoint_id, delivery_id)

    delivery = await request.app[keys.DATABASE].write(
        audited(queue, audit_entry(request, "webhook.ping", "webhook", endpoint_id))
    )
    _wake(request)
    return web.json_response(delivery, status=202)
