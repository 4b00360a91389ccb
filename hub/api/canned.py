"""Canned replies: list and read (agent), create, change and delete (admin;
audited), and a preview rendered for a conversation and the calling agent."""

from __future__ import annotations

from aiohttp import web

from hub import keys
from hub.api.base import current_user, json_body, path_id, requires
from hub.audit import Actor
from hub.canned.store import check_name
from hub.errors import InvalidInput, NotFound
from hub.models import Role

routes = web.RouteTableDef()


def _name(request: web.Request) -> str:
    raw = request.match_info["name"]
    try:
        return check_name(raw)
    except InvalidInput as err:  # a path that names nothing that could exist
        raise NotFound(f"no canned reply named {raw[:70]!r}") from err


def _actor(request: web.Request) -> Actor:
    return Actor(current_user(request).id, "api")


@routes.get("/api/v1/canned-replies")
@requires(Role.AGENT)
async def list_replies(request: web.Request) -> web.Response:
    """``?team=``: that team's replies and those of every team."""
    found = await request.app[keys.CANNED_REPLIES].list(team=request.query.get("team") or None)
    return web.json_response({"items": [reply.to_dict() for reply in found]})


@routes.post("/api/v1/canned-replies")
@requires(Role.ADMIN)
async def create_reply(request: web.Request) -> web.Response:
    body = await json_body(request)
    reply = await request.app[keys.CANNED_REPLIES].create(body, actor=_actor(request))
    return web.json_response(reply.to_dict(), status=201)


@routes.get("/api/v1/canned-replies/{name}")
@requires(Role.AGENT)
async def get_reply(request: web.Request) -> web.Response:
    return web.json_response((await request.app[keys.CANNED_REPLIES].get(_name(request))).to_dict())


@routes.patch("/api/v1/canned-replies/{name}")
@requires(Role.ADMIN)
async def update_reply(request: web.Request) -> web.Response:
    body = await json_body(request)
    reply = await request.app[keys.CANNED_REPLIES].update(_name(request), body, actor=_actor(request))
    return web.json_response(reply.to_dict())


@routes.delete("/api/v1/canned-replies/{name}")
@requires(Role.ADMIN)
async def delete_reply(request: web.Request) -> web.Response:
    await request.app[keys.CANNED_REPLIES].delete(_name(request), actor=_actor(request))
    return web.Response(status=204)


@routes.post("/api/v1/conversations/{id}/canned-replies/{name}/preview")
@requires(Role.AGENT)
async def preview(request: web.Request) -> web.Response:
    """The reply as it would go to this conversation's customer from the calling agent (nothing is sent)."""
    reply, text = await request.app[keys.CANNED_REPLIES].render_for(
        _name(request), path_id(request), current_user(request).id
    )
    return web.json_response({"name": reply.name, "conversation_id": path_id(request), "text": text})
