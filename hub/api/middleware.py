"""Middlewares: errors to JSON, bearer-token auth and roles, metrics, access log."""

from __future__ import annotations

import itertools
import logging
import os
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from hub import keys
from hub.api.base import PUBLIC, REQUEST_ID, REQUIRED_ROLE, USER
from hub.errors import Forbidden, HubError, RateLimited, Unauthorized
from hub.models import Role

log = logging.getLogger("hub.http")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HubError as err:
        if err.status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, err.message)
        elif isinstance(err, Unauthorized):
            # Fixed body; the reason goes to the debug log only (slack-bolt habit).
            log.debug("%s %s unauthorised: %s", request.method, request.path, err.message)
            return web.json_response({"error": {"code": err.code, "message": "unauthorized"}}, status=401)
        headers = {}
        if isinstance(err, RateLimited):
            headers["Retry-After"] = str(max(1, int(err.retry_after + 0.999)))
        return web.json_response(err.to_dict(), status=err.status, headers=headers)
    except web.HTTPException as exc:
        if (
            exc.status >= 400
            and exc.content_type != "application/json"
            and request.path.startswith(("/api/", "/channels/"))
        ):
            return web.json_response(
                {"error": {"code": exc.reason.lower().replace(" ", "_"), "message": exc.reason}},
                status=exc.status,
                headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
            )
        raise
    except Exception:
        request_id = request.get(REQUEST_ID, "-")
        log.exception("unhandled error in %s %s (request %s)", request.method, request.path, request_id)
        return web.json_response(
            {"error": {"code": "internal_error", "message": f"internal error (request {request_id})"}}, status=500
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    route_handler = request.match_info.handler
    if getattr(route_handler, PUBLIC, False):
        return await handler(request)
    needed: Role = getattr(route_handler, REQUIRED_ROLE, Role.ADMIN)  # fail closed
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token")
    user = await request.app[keys.AUTH].authenticate(token.strip())
    if user is None:
        raise Unauthorized("unknown or revoked token")
    if not user.role.allows(needed):
        raise Forbidden(f"this action needs the {needed.value} role; you are {user.role.value}")
    request[USER] = user
    return await handler(request)


# Request ids only need to be unique within the logs: a random per-process
# prefix and a counter (uuid4 per request cost ~5% of a webhook's CPU).
_REQUEST_ID_PREFIX = os.urandom(4).hex()
_request_counter = itertools.count(1)


def _next_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):08x}"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[REQUEST_ID] = request.headers.get("X-Request-Id") or _next_request_id()
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[keys.METRICS].request_latency.labels(request.method, route, str(status)).observe(elapsed)
        if log.isEnabledFor(logging.DEBUG) or status >= 500:
            log.log(
                logging.ERROR if status >= 500 else logging.DEBUG,
                "%s %s -> %s in %.1f ms",
                request.method,
                request.path,
                status,
                elapsed * 1000,
                extra={"request_id": request[REQUEST_ID], "status": status, "route": route},
            )
