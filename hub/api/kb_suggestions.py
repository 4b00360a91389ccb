"""Phrasing suggestions for knowledge-base articles: list (viewer), accept or reject (admin)."""

from __future__ import annotations

from aiohttp import web

from hub import keys
from hub.api.base import current_user, int_param, path_id, requires
from hub.audit import Actor
from hub.errors import InvalidInput
from hub.events import utcnow
from hub.kb.suggestions import PENDING, STATUSES
from hub.models import Role

routes = web.RouteTableDef()


@routes.get("/api/v1/kb/suggestions")
@requires(Role.VIEWER)
async def suggestions(request: web.Request) -> web.Response:
    """``?status=pending|accepted|rejected|all&collection=&article_id=&after=&limit=``, newest first."""
    status = request.query.get("status", PENDING)
    if status not in (*STATUSES, "all"):
        raise InvalidInput("status must be pending, accepted, rejected or all")
    limit = int_param(request, "limit", default=50, hi=200)
    found = await request.app[keys.PHRASINGS].list(
        status=None if status == "all" else status,
        collection=request.query.get("collection"),
        article_id=request.query.get("article_id"),
        after_id=int_param(request, "after"),
        limit=limit,
    )
    return web.json_response(
        {"items": [s.to_dict() for s in found], "next_after": found[-1].id if len(found) == limit else None}
    )


@routes.post("/api/v1/kb/suggestions/{id}/accept")
@requires(Role.ADMIN)
async def accept(request: web.Request) -> web.Response:
    suggestion = await request.app[keys.PHRASINGS].accept(
        path_id(request), actor=Actor(current_user(request).id, "api"), now=utcnow()
    )
    return web.json_response(suggestion.to_dict())


@routes.post("/api/v1/kb/suggestions/{id}/reject")
@requires(Role.ADMIN)
async def reject(request: web.Request) -> web.Response:
    suggestion = await request.app[keys.PHRASINGS].reject(
        path_id(request), actor=Actor(current_user(request).id, "api"), now=utcnow()
    )
    return web.json_response(suggestion.to_dict())
