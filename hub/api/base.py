"""Shared pieces of the API: role checks, body/query parsing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from aiohttp import web

from hub.audit import Actor, Audit
from hub.errors import Forbidden, InvalidInput
from hub.models import Role, User

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

REQUIRED_ROLE = "required_role"
PUBLIC = "public"
USER = web.RequestKey("user", User)
REQUEST_ID = web.RequestKey("request_id", str)


def requires(role: Role) -> Callable[[H], H]:
    """Mark a handler with the least role that may call it."""

    def mark(handler: H) -> H:
        setattr(handler, REQUIRED_ROLE, role)
        return handler

    return mark


def public(handler: H) -> H:
    """Mark a handler as callable without a token (it must never leak contact data)."""
    setattr(handler, PUBLIC, True)
    return handler


def current_user(request: web.Request) -> User:
    user = request.get(USER)
    if user is None:
        raise Forbidden("this endpoint needs a user")
    return user


def audit_entry(
    request: web.Request, action: str, target_type: str | None = None, target_id: Any = None, **details: Any
) -> Audit:
    """The audit row of this request's action, written with its change (``hub.audit``)."""
    return Audit(Actor(current_user(request).id, "api"), action, target_type, target_id, details)


async def json_body(request: web.Request, *, max_bytes: int = 1_048_576) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        raise InvalidInput("request body is empty; expected a JSON object")
    if len(raw) > max_bytes:
        raise InvalidInput(f"request body is larger than {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInput(f"request body is not valid JSON: {err}") from err
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise InvalidInput(f"'{name}' is required")
        return None
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidInput(f"'{name}' must be {names}")
    return value


def assignee_filter(request: web.Request) -> dict[str, Any]:
    """``?assignee=none|me|<user id>`` as list filters (empty when absent)."""
    assignee = request.query.get("assignee")
    if assignee == "none":
        return {"unassigned": True}
    if assignee == "me":
        return {"assignee_id": current_user(request).id}
    if assignee:
        return {"assignee_id": int_param(request, "assignee")}
    return {}


@overload
def int_param(request: web.Request, name: str, *, default: int, lo: int = 1, hi: int = 10**12) -> int: ...
@overload
def int_param(
    request: web.Request, name: str, *, default: None = None, lo: int = 1, hi: int = 10**12
) -> int | None: ...
def int_param(
    request: web.Request, name: str, *, default: int | None = None, lo: int = 1, hi: int = 10**12
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter '{name}' must be an integer") from None
    if not lo <= value <= hi:
        raise InvalidInput(f"query parameter '{name}' must be between {lo} and {hi}")
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise InvalidInput(f"'{name}' must be an integer") from None


async def timeline_page(request: web.Request, **scope: int) -> web.Response:
    """One page of a timeline (``contact_id=`` or ``conversation_id=``) from the
    request's ``after``/``before``/``limit``; the owner must exist (404)."""
    from hub import keys

    service = request.app[keys.SERVICE]
    if "contact_id" in scope:
        await service.get_contact(scope["contact_id"])
    else:
        await service.get_conversation(scope["conversation_id"])
    page = await service.timeline(
        **scope,
        after=request.query.get("after"),
        before=request.query.get("before"),
        limit=int_param(request, "limit", default=50, hi=200),
    )
    return web.json_response(page.to_dict())
