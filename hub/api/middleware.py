"""Middlewares: errors to JSON, bearer-token auth and roles, metrics, access log;
the headers every response carries."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

import sqlalchemy as sa
from aiohttp import web
from aiohttp.typedefs import Handler

from hub import keys
from hub.api.base import PUBLIC, REQUEST_ID, REQUIRED_ROLE, USER
from hub.errors import Conflict, Forbidden, HubError, InvalidInput, RateLimited, Unauthorized, Unavailable
from hub.models import Role

log = logging.getLogger("hub.http")


# "UNIQUE constraint failed: users.slack_user_id" (SQLite), "Key (slack_user_id)=(...)" (PostgreSQL).
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)")
_POSTGRES_KEY = re.compile(r"Key \(([\w, ]+)\)=")


def integrity_error(err: sa.exc.IntegrityError) -> HubError:
    """What a client did to break a constraint, as a 4xx naming the field
    (never the value: it may be personal): a duplicate is a 409 Conflict, a
    reference to nothing or a missing value a 400."""
    text = str(err.orig)
    cause = getattr(err.orig, "__cause__", None)
    sqlstate = getattr(cause, "sqlstate", None) or getattr(err.orig, "sqlstate", None)
    detail = getattr(cause, "detail", None) or ""
    if sqlstate == "23505" or "UNIQUE constraint failed" in text:
        found = _SQLITE_UNIQUE.search(text) or _POSTGRES_KEY.search(detail)
        if found:
            fields = ", ".join(name.rpartition(".")[2] for name in found.group(1).split(", "))
            return Conflict(f"another record already has this {fields}", details={"field": fields})
        return Conflict("another record already has one of these values")
    if sqlstate == "23503" or "FOREIGN KEY constraint failed" in text:
        return InvalidInput("a referenced record does not exist")
    return InvalidInput("a value is missing or not allowed here")


def database_error(err: sa.exc.DBAPIError | ConnectionError) -> HubError:
    """The database cannot answer (down, restarting, its connection lost, or
    SQLite's writer locked past its timeout): 503, which a client may retry."""
    return Unavailable("the database is not available right now; try again shortly")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        try:
            return await handler(request)
        except sa.exc.IntegrityError as err:
            raise integrity_error(err) from err
        except (sa.exc.OperationalError, sa.exc.InterfaceError, ConnectionError) as err:
            raise database_error(err) from err
    except HubError as err:
        if err.status >= 500:
            # With the cause's traceback (a database error's statement, never its parameters).
            log.error("%s %s failed: %s", request.method, request.path, err.message, exc_info=err.__cause__ is not None)
        elif isinstance(err, Unauthorized):
            # Fixed body; the reason goes to the debug log only (slack-bolt habit).
            log.debug("%s %s unauthorised: %s", request.method, request.path, err.message)
            # 401, or 403 where the vendor documents it (RefusedSignature: Twilio).
            message = "forbidden" if err.status == 403 else "unauthorized"
            return web.json_response({"error": {"code": err.code, "message": message}}, status=err.status)
        headers = {}
        if isinstance(err, RateLimited):
            headers["Retry-After"] = str(max(1, int(err.retry_after + 0.999)))
        elif isinstance(err, Unavailable):
            headers["Retry-After"] = "5"
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


# A client's X-Request-Id goes into logs and error bodies: only a safe shape is kept.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_of(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _SAFE_REQUEST_ID.fullmatch(given) else _next_request_id()


# nginx's status for a request whose client closed the connection before the answer.
CLIENT_CLOSED_REQUEST = 499
_LEVELS = {CLIENT_CLOSED_REQUEST: logging.WARNING}


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[REQUEST_ID] = request_id_of(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # The client left before the answer (a caller's timeout): not the hub's error. Logged,
        # as nginx does, as 499 at WARNING; a 500 at ERROR sent operators after a fault that was not.
        status = CLIENT_CLOSED_REQUEST
        raise
    finally:
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[keys.METRICS].request_latency.labels(request.method, route, str(status)).observe(elapsed)
        level = logging.ERROR if status >= 500 else _LEVELS.get(status, logging.DEBUG)
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s %s -> %s in %.1f ms",
                request.method,
                request.path,
                status,
                elapsed * 1000,
                extra={"request_id": request[REQUEST_ID], "status": status, "route": route},
            )


SERVER_NAME = "servicehub"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: on every response, error pages included.

    No version in ``Server:`` (aiohttp's default names itself and Python);
    ``nosniff`` wherever the hub answers with data (``/api/*``, ``/metrics``,
    webhooks). Page-specific policies (CSP) stay with the pages.
    """
    response.headers["Server"] = SERVER_NAME
    if request.path.startswith(("/api/", "/metrics", "/channels/")):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
