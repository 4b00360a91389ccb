"""Conversations: list with filters, read, timeline, agent replies, notes, status/priority/assignee."""

from __future__ import annotations

from aiohttp import web

from hub import keys
from hub.api.base import (
    assignee_filter,
    audit_entry,
    current_user,
    field,
    int_param,
    json_body,
    path_id,
    requires,
    timeline_page,
)
from hub.errors import InvalidInput, NotFound
from hub.models import AuthorKind, Role

routes = web.RouteTableDef()


@routes.get("/api/v1/conversations")
@requires(Role.VIEWER)
async def list_conversations(request: web.Request) -> web.Response:
    q = request.query
    filters = {
        "status": q.get("status"),
        "priority": q.get("priority"),
        "channel": q.get("channel"),
        "contact_id": int_param(request, "contact_id"),
        "after_id": int_param(request, "after"),
        "limit": int_param(request, "limit", default=50, hi=200),
        **assignee_filter(request),
    }
    found = await request.app[keys.SERVICE].list_conversations(**filters)
    return web.json_response(
        {"items": [c.to_dict() for c in found], "next_after": found[-1].id if len(found) == filters["limit"] else None}
    )


@routes.get("/api/v1/conversations/{id}")
@requires(Role.VIEWER)
async def get_conversation(request: web.Request) -> web.Response:
    conversation = await request.app[keys.SERVICE].get_conversation(path_id(request))
    return web.json_response(conversation.to_dict())


@routes.patch("/api/v1/conversations/{id}")
@requires(Role.AGENT)
async def update_conversation(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body:
        raise InvalidInput("nothing to change: give status, priority, assignee_id, handler or subject")
    user = current_user(request)
    service = request.app[keys.SERVICE]
    conversation_id = path_id(request)
    conversation = await service.update_conversation(
        conversation_id,
        body,
        actor_id=user.id,
        audit=audit_entry(request, "conversation.update", "conversation", conversation_id),
    )
    return web.json_response(conversation.to_dict())


@routes.get("/api/v1/conversations/{id}/timeline")
@requires(Role.VIEWER)
async def conversation_timeline(request: web.Request) -> web.Response:
    return await timeline_page(request, conversation_id=path_id(request))


@routes.post("/api/v1/conversations/{id}/messages")
@requires(Role.AGENT)
async def post_reply(request: web.Request) -> web.Response:
    """An agent's reply, delivered on the customer's channel through the outbox.

    ``Idempotency-Key`` (header) makes a retried POST return the first reply.
    """
    body = await json_body(request)
    text = field(body, "text", str)
    user = current_user(request)
    message = await request.app[keys.SERVICE].reply(
        path_id(request),
        text,
        author_kind=AuthorKind.AGENT,
        author_id=user.id,
        idempotency_key=request.headers.get("Idempotency-Key"),
        audit=audit_entry(request, "conversation.reply", "conversation", path_id(request)),
    )
    return web.json_response(message.to_dict(), status=201)


@routes.post("/api/v1/conversations/{id}/notes")
@requires(Role.AGENT)
async def post_note(request: web.Request) -> web.Response:
    body = await json_body(request)
    text = field(body, "text", str)
    note = await request.app[keys.SERVICE].add_note(
        path_id(request),
        text,
        author_id=current_user(request).id,
        audit=audit_entry(request, "conversation.note", "conversation", path_id(request)),
    )
    return web.json_response(note.to_dict(), status=201)


@routes.get("/api/v1/messages/{id}")
@requires(Role.VIEWER)
async def get_message(request: web.Request) -> web.Response:
    message = await request.app[keys.SERVICE].get_message(path_id(request))
    return web.json_response(message.to_dict())


@routes.get("/api/v1/attachments/{attachment_id}")
@requires(Role.VIEWER)
async def get_attachment(request: web.Request) -> web.StreamResponse:
    """A file that came with a message (an e-mail attachment, the original
    .eml), as a download: never rendered by the browser in the hub's origin."""
    store = request.app[keys.SERVICE].attachments
    if store is None:
        raise NotFound("the hub keeps no attachments")
    path, content_type, _size = await store.open(request.match_info["attachment_id"])
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": "attachment",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600",
        },
    )
