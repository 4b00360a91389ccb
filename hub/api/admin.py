"""Admin endpoints: users, tokens, the audit log (the queues' dead letters: ``hub.api.jobs``)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from hub import auth, keys
from hub.api.base import audit_entry, current_user, field, int_param, json_body, path_id, requires
from hub.audit import audited
from hub.models import Role
from hub.storage.schema import audit_log

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
    limit = int_param(request, "limit", default=100, hi=1000)

    def load(conn: sa.Connection) -> list[dict]:
        found = conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
        return [
            {
                "id": r.id,
                "user_id": r.user_id,
                "action": r.action,
                "target_type": r.target_type,
                "target_id": r.target_id,
                "details": r.details,
                "created_at": r.created_at.isoformat(),
            }
            for r in found
        ]

    return web.json_response({"items": await request.app[keys.DATABASE].read(load)})
