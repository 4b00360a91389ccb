"""Admin endpoints: users, tokens, the audit log (the queues' dead letters: ``hub.api.jobs``)."""

from __future__ import annotations

from aiohttp import web

from hub import auth, keys
from hub.api.base import audit_entry, current_user, field, int_param, json_body, path_id, requires
from hub.audit import VIA, audited, list_entries
from hub.errors import InvalidInput
from hub.models import Role

routes = web.RouteTableDef()


@routes.get("/api/v1/me")
@requires(Role.VIEWER)
async def me(request: web.Request) -> web.Response:
    return web.json_response(auth.user_summary(current_user(request)))


@routes.get("/api/v1/users")
@requires(Role.ADMIN)
async def list_users(request: web.Request) -> web.Response:
    found = await request.app[keys.DATABASE].read(auth.list_users)
    return web.json_response({"items": [u.to_dict() for u in found]})


@routes.post("/api/v1/users")
@requires(Role.ADMIN)
async def create_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    user = await request.app[keys.DATABASE].write(
        audited(
            lambda conn: auth.create_user(
                conn,
                name=field(body, "name", str),
                email=field(body, "email", str),
                role=field(body, "role", str),
                slack_user_id=field(body, "slack_user_id", str, required=False),
            ),
            audit_entry(request, "user.create", "user"),
            lambda user: {"target_id": user.id, "role": user.role.value},
        )
    )
    return web.json_response(user.to_dict(), status=201)


@routes.post("/api/v1/users/{id}/tokens")
@requires(Role.ADMIN)
async def create_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = field(body, "name", str)
    user_id = path_id(request)
    token, token_id = await request.app[keys.DATABASE].write(
        audited(auth.create_token, audit_entry(request, "token.create", "user", user_id), lambda r: {"token_id": r[1]}),
        user_id,
        name,
    )
    return web.json_response({"id": token_id, "token": token}, status=201)


@routes.delete("/api/v1/tokens/{id}")
@requires(Role.ADMIN)
async def revoke_token(request: web.Request) -> web.Response:
    token_id = path_id(request)
    await request.app[keys.DATABASE].write(
        audited(auth.revoke_token, audit_entry(request, "token.revoke", "token", token_id)), token_id
    )
    return web.json_response({"revoked": token_id})


@routes.get("/api/v1/audit")
@requires(Role.ADMIN)
async def list_audit(request: web.Request) -> web.Response:
    """Newest first; ``action``, ``via`` (api, slack, cli), ``target_type`` and ``target_id`` filter."""
    q = request.query
    via = q.get("via")
    if via is not None and via not in VIA:
        raise InvalidInput(f"via must be one of {', '.join(VIA)}")
    limit = int_param(request, "limit", default=100, hi=1000)
    found = await request.app[keys.DATABASE].read(
        lambda conn: list_entries(
            conn,
            limit=limit,
            action=q.get("action"),
            via=via,
            target_type=q.get("target_type"),
            target_id=q.get("target_id"),
        )
    )
    return web.json_response({"items": found})
