"""Shared pieces of the API: role checks, body/query parsing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from aiohttp import web

from hub.audit import Actor, Audit
from hub.errors import Forbidden, InvalidInput, NotFound, TooLarge
from hub.inputs import FIELD_LIMITS, ascii_int, check_fields, check_id, check_length, load_json, parse_id
from hub.models import Role, User

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

REQUIRED_ROLE = "required_role"
PUBLIC = "public"
USER = web.RequestKey("user", User)
REQUEST_ID = web.RequestKey("request_id", str)
# Set by ``hub.api.schema``: the body and the parameters, checked against the OpenAPI document.
BODY = web.RequestKey("body", dict[str, Any])
PARAMS = web.RequestKey("params", dict[str, Any])
MAX_JSON_BYTES = 1_048_576


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


def read_json_object(raw: bytes, *, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """``raw`` as a JSON object, checked where it enters (``hub.inputs``):
    size, depth, no NaN/Infinity, valid Unicode (NFC), 64-bit integers, and
    the known fields' types and lengths. Every failure is a 400 naming why."""
    if not raw:
        raise InvalidInput("request body is empty; expected a JSON object")
    if len(raw) > max_bytes:
        raise TooLarge(f"request body is larger than {max_bytes} bytes")
    body = load_json(raw, what="request body")
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return check_fields(body)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object: as ``hub.api.schema`` read and validated it
    against the operation's schema, or (an operation without one) read here."""
    body = request.get(BODY)
    if body is not None:
        return body
    return read_json_object(await request.read())


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise InvalidInput(f"'{name}' is required")
        return None
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidInput(f"'{name}' must be {names}")
    if kind is int and name.endswith("_id"):
        return check_id(value, name)
    if isinstance(value, str) and name in FIELD_LIMITS:
        check_length(value, name, FIELD_LIMITS[name])
    return value


def assignee_filter(request: web.Request) -> dict[str, Any]:
    """``?assignee=none|me|<user id>`` as list filters (empty when absent)."""
    assignee = request.query.get("assignee")
    if assignee == "none":
        return {"unassigned": True}
    if assignee == "me":
        return {"assignee_id": current_user(request).id}
    if assignee:
        value = parse_id(assignee)
        if value is None:
            raise InvalidInput("query parameter 'assignee' must be me, none or a user id")
        return {"assignee_id": value}
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
    checked = request.get(PARAMS, {})
    if name in checked:  # converted and bounded by the document (hub.api.schema)
        return int(checked[name])
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    # ASCII digits with an optional minus sign only: int() also takes "١٢", " 1_0 " and 5,000-digit numbers.
    digits = raw[1:] if raw.startswith("-") else raw
    value = ascii_int(digits)
    if value is None:
        raise InvalidInput(f"query parameter '{name}' must be an integer")
    value = -value if raw.startswith("-") else value
    if not lo <= value <= hi:
        raise InvalidInput(f"query parameter '{name}' must be between {lo} and {hi}")
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    """An id in the path: 1 .. 2**63-1 in ASCII digits; anything else names
    nothing that could exist, so 404 (never an OverflowError deeper down)."""
    raw = request.match_info[name]
    value = parse_id(raw)
    if value is None:
        raise NotFound(f"no such {name}: {raw[:30]!r} is not an id")
    return value


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
