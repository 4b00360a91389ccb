"""Automation rules for an admin: list, read, create, change, delete (audited),
a dry run over the past, and the runs a rule made.

A dry run takes a saved rule (``GET .../rules/{id}/dry-run``) or an unsaved
one (``POST /api/v1/automation/dry-run``), so a rule can be tried before it
is switched on.
"""

from __future__ import annotations

from aiohttp import web

from hub import keys
from hub.api.base import audit_entry, int_param, json_body, path_id, requires
from hub.audit import audited
from hub.automation import store
from hub.automation.rules import parse
from hub.errors import InvalidInput
from hub.events import utcnow
from hub.models import Role

routes = web.RouteTableDef()


def _days(request: web.Request) -> float:
    raw = request.query.get("days", "30")
    try:
        days = float(raw)
    except ValueError:
        raise InvalidInput("days must be a number", details={"field": "days", "in": "query"}) from None
    if not 0 < days <= 365:
        raise InvalidInput("days must be more than 0 and at most 365", details={"field": "days", "in": "query"})
    return days


def _rules_changed(request: web.Request) -> None:
    """This instance's matcher re-reads the rules now; the others within a second (hub.versions)."""
    automation = request.app.get(keys.AUTOMATION)
    if automation is not None:
        automation.rules_changed()


@routes.get("/api/v1/automation/rules")
@requires(Role.ADMIN)
async def list_rules(request: web.Request) -> web.Response:
    rules = await request.app[keys.DATABASE].read(store.list_rules)
    return web.json_response({"items": [rule.to_json() for rule in rules]})


@routes.post("/api/v1/automation/rules")
@requires(Role.ADMIN)
async def create_rule(request: web.Request) -> web.Response:
    body = await json_body(request)
    entry = audit_entry(request, "automation_rule.create", "automation_rule", body.get("name"))
    rule = await request.app[keys.DATABASE].write(audited(store.create_rule, entry), body, now=utcnow())
    _rules_changed(request)
    return web.json_response(rule.to_json(), status=201)


@routes.get("/api/v1/automation/rules/{id}")
@requires(Role.ADMIN)
async def get_rule(request: web.Request) -> web.Response:
    rule = await request.app[keys.DATABASE].read(store.get_rule, path_id(request))
    return web.json_response(rule.to_json())


@routes.patch("/api/v1/automation/rules/{id}")
@requires(Role.ADMIN)
async def update_rule(request: web.Request) -> web.Response:
    body = await json_body(request)
    rule_id = path_id(request)
    entry = audit_entry(request, "automation_rule.update", "automation_rule", rule_id, fields=sorted(body))
    rule = await request.app[keys.DATABASE].write(audited(store.update_rule, entry), rule_id, body, now=utcnow())
    _rules_changed(request)
    return web.json_response(rule.to_json())


@routes.delete("/api/v1/automation/rules/{id}")
@requires(Role.ADMIN)
async def delete_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request)
    entry = audit_entry(request, "automation_rule.delete", "automation_rule", rule_id)
    await request.app[keys.DATABASE].write(audited(store.delete_rule, entry), rule_id)
    _rules_changed(request)
    return web.Response(status=204)


@routes.get("/api/v1/automation/rules/{id}/dry-run")
@requires(Role.ADMIN)
async def dry_run_saved(request: web.Request) -> web.Response:
    rule = await request.app[keys.DATABASE].read(store.get_rule, path_id(request))
    limit = int_param(request, "limit", default=50, hi=500)
    return web.json_response(await request.app[keys.AUTOMATION].dry_run(rule, days=_days(request), limit=limit))


@routes.post("/api/v1/automation/dry-run")
@requires(Role.ADMIN)
async def dry_run_draft(request: web.Request) -> web.Response:
    rule = parse(await json_body(request))
    limit = int_param(request, "limit", default=50, hi=500)
    return web.json_response(await request.app[keys.AUTOMATION].dry_run(rule, days=_days(request), limit=limit))


@routes.get("/api/v1/automation/rules/{id}/runs")
@requires(Role.ADMIN)
async def list_runs(request: web.Request) -> web.Response:
    db = request.app[keys.DATABASE]
    rule_id = path_id(request)
    await db.read(store.get_rule, rule_id)  # a 404 for a rule that does not exist
    status = request.query.get("status") or None
    if status is not None and status not in store.RUNS.spec.statuses:
        raise InvalidInput(f"status must be one of {', '.join(store.RUNS.spec.statuses)}")
    limit = int_param(request, "limit", default=50, hi=500)
    items = await db.read(lambda conn: store.list_runs(conn, rule_id=rule_id, status=status, limit=limit))
    return web.json_response({"items": items})
