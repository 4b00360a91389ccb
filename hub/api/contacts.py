"""Contacts: search, read, update, merge, export (right to know), erase (right to erasure)."""

from __future__ import annotations

from aiohttp import web

from hub import keys
from hub.api.base import audit_entry, current_user, field, int_param, json_body, path_id, requires, timeline_page
from hub.errors import InvalidInput
from hub.models import Role

routes = web.RouteTableDef()


@routes.get("/api/v1/contacts")
@requires(Role.VIEWER)
async def search_contacts(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", default=50, hi=200)
    after = int_param(request, "after", lo=0)
    found = await request.app[keys.SERVICE].search_contacts(request.query.get("q"), limit=limit, after_id=after)
    return web.json_response(
        {"items": [c.to_dict() for c in found], "next_after": found[-1].id if len(found) == limit else None}
    )


@routes.get("/api/v1/contacts/{id}")
@requires(Role.VIEWER)
async def get_contact(request: web.Request) -> web.Response:
    service = request.app[keys.SERVICE]
    contact = await service.get_contact(path_id(request))
    return web.json_response({**contact.to_dict(), "opt_outs": await service.opt_outs(contact.id)})


@routes.patch("/api/v1/contacts/{id}")
@requires(Role.AGENT)
async def update_contact(request: web.Request) -> web.Response:
    body = await json_body(request)
    changes = {}
    if "name" in body:
        changes["name"] = field(body, "name", str, required=False)
    if "attributes" in body:
        changes["attributes"] = field(body, "attributes", dict)
    if "tags" in body:
        tags = field(body, "tags", list)
        if not all(isinstance(t, str) for t in tags):
            raise InvalidInput("'tags' must be a list of strings")
        changes["tags"] = sorted(set(tags))
    if not changes:
        raise InvalidInput("nothing to change: give name, attributes or tags")
    service = request.app[keys.SERVICE]
    contact_id = path_id(request)
    contact = await service.update_contact(
        contact_id, changes, audit=audit_entry(request, "contact.update", "contact", contact_id, fields=sorted(changes))
    )
    return web.json_response(contact.to_dict())


@routes.get("/api/v1/contacts/{id}/timeline")
@requires(Role.VIEWER)
async def contact_timeline(request: web.Request) -> web.Response:
    return await timeline_page(request, contact_id=path_id(request))


@routes.post("/api/v1/contacts/{id}/merge")
@requires(Role.AGENT)
async def merge_contact(request: web.Request) -> web.Response:
    """Merge contact ``source_id`` (body) into this one."""
    body = await json_body(request)
    source_id = field(body, "source_id", int)
    target_id = path_id(request)
    service = request.app[keys.SERVICE]
    merged = await service.merge_contacts(
        source_id,
        target_id,
        actor_id=current_user(request).id,
        audit=audit_entry(request, "contact.merge", "contact", target_id, source_id=source_id),
    )
    return web.json_response(merged.to_dict())


@routes.get("/api/v1/contacts/{id}/export")
@requires(Role.ADMIN)
async def export_contact(request: web.Request) -> web.Response:
    service = request.app[keys.SERVICE]
    contact_id = path_id(request)
    data = await service.export_contact(contact_id, audit=audit_entry(request, "contact.export", "contact", contact_id))
    return web.json_response(data, headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'})


@routes.delete("/api/v1/contacts/{id}")
@requires(Role.ADMIN)
async def erase_contact(request: web.Request) -> web.Response:
    service = request.app[keys.SERVICE]
    contact_id = path_id(request)
    counts = await service.erase_contact(contact_id, audit=audit_entry(request, "contact.erase", "contact", contact_id))
    return web.json_response({"erased": contact_id, "deleted": counts})
