"""Tickets, the queue, agents (duty and profile), routing rules, SLA policies."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub import keys
from hub.api.base import assignee_filter, audit_entry, current_user, field, int_param, json_body, path_id, requires
from hub.audit import audited
from hub.errors import Forbidden, InvalidInput, Unavailable
from hub.models import Priority, Role
from hub.tickets.rules import add_rule, delete_rule, list_rules
from hub.tickets.service import TicketService

routes = web.RouteTableDef()


def _tickets(request: web.Request) -> TicketService:
    service = request.app.get(keys.TICKETS)
    if service is None:
        raise Unavailable("tickets are not running")
    return service


# --- tickets ----------------------------------------------------------------------


@routes.post("/api/v1/conversations/{id}/handoff")
@requires(Role.AGENT)
async def handoff(request: web.Request) -> web.Response:
    """Hand a conversation to humans: opens (or escalates) its ticket."""
    raw = await request.read()
    body = await json_body(request) if raw else {}
    priority = field(body, "priority", str, required=False) or Priority.NORMAL.value
    ticket = await _tickets(request).open(
        path_id(request),
        priority=priority,
        reason=field(body, "reason", str, required=False) or "handed off by an agent",
        team=field(body, "team", str, required=False),
        source="agent",
        actor_id=current_user(request).id,
        audit=audit_entry(request, "ticket.handoff", "conversation", path_id(request)),
    )
    return web.json_response(ticket.to_dict(), status=201)


@routes.get("/api/v1/tickets")
@requires(Role.VIEWER)
async def list_tickets(request: web.Request) -> web.Response:
    q = request.query
    status = q.get("status", "open")
    if status not in ("open", "resolved", "all"):
        raise InvalidInput("status must be open, resolved or all")
    limit = int_param(request, "limit", default=50, hi=200)
    filters: dict[str, Any] = {
        "status": None if status == "all" else status,
        "team": q.get("team"),
        "limit": limit,
        "after_id": int_param(request, "after"),
        **assignee_filter(request),
    }
    found = await _tickets(request).list(**filters)
    return web.json_response(
        {"items": [t.to_dict() for t in found], "next_after": found[-1].id if len(found) == limit else None}
    )


@routes.get("/api/v1/tickets/queue")
@requires(Role.AGENT)
async def ticket_queue(request: web.Request) -> web.Response:
    """Unassigned open tickets, most urgent first."""
    found = await _tickets(request).queue(
        team=request.query.get("team"), limit=int_param(request, "limit", default=100, hi=500)
    )
    return web.json_response({"items": [t.to_dict() for t in found]})


@routes.get("/api/v1/tickets/{id}")
@requires(Role.VIEWER)
async def get_ticket(request: web.Request) -> web.Response:
    return web.json_response((await _tickets(request).get(path_id(request))).to_dict())


@routes.post("/api/v1/tickets/{id}/claim")
@requires(Role.AGENT)
async def claim(request: web.Request) -> web.Response:
    ticket = await _tickets(request).claim(
        path_id(request),
        current_user(request).id,
        audit=audit_entry(request, "ticket.claim", "ticket", path_id(request)),
    )
    return web.json_response(ticket.to_dict())


@routes.post("/api/v1/tickets/{id}/assign")
@requires(Role.AGENT)
async def assign(request: web.Request) -> web.Response:
    """``{"assignee_id": 7}`` or ``{"assignee_id": null}`` (back to the queue)."""
    body = await json_body(request)
    if "assignee_id" not in body:
        raise InvalidInput("'assignee_id' is required (null returns the ticket to the queue)")
    assignee = field(body, "assignee_id", int, required=False)
    user = current_user(request)
    ticket = await _tickets(request).assign(
        path_id(request),
        assignee,
        actor_id=user.id,
        audit=audit_entry(request, "ticket.assign", "ticket", path_id(request), assignee_id=assignee),
    )
    return web.json_response(ticket.to_dict())


@routes.post("/api/v1/tickets/{id}/resolve")
@requires(Role.AGENT)
async def resolve(request: web.Request) -> web.Response:
    ticket = await _tickets(request).resolve(
        path_id(request),
        actor_id=current_user(request).id,
        audit=audit_entry(request, "ticket.resolve", "ticket", path_id(request)),
    )
    return web.json_response(ticket.to_dict())


@routes.post("/api/v1/tickets/{id}/priority")
@requires(Role.AGENT)
async def set_priority(request: web.Request) -> web.Response:
    body = await json_body(request)
    priority = field(body, "priority", str)
    ticket = await _tickets(request).set_priority(
        path_id(request),
        priority,
        actor_id=current_user(request).id,
        audit=audit_entry(request, "ticket.priority", "ticket", path_id(request), priority=priority),
    )
    return web.json_response(ticket.to_dict())


@routes.post("/api/v1/tickets/{id}/snooze")
@requires(Role.AGENT)
async def snooze(request: web.Request) -> web.Response:
    raw = await request.read()
    body = await json_body(request) if raw else {}
    minutes = field(body, "minutes", (int, float), required=False)
    if minutes is not None and not 0 < minutes <= 60 * 24 * 30:
        raise InvalidInput("minutes must be between 0 and 43200")
    ticket = await _tickets(request).snooze(
        path_id(request),
        minutes=minutes,
        actor_id=current_user(request).id,
        audit=audit_entry(request, "ticket.snooze", "ticket", path_id(request), minutes=minutes),
    )
    return web.json_response(ticket.to_dict())


# --- agents ------------------------------------------------------------------------------


@routes.get("/api/v1/agents")
@requires(Role.AGENT)
async def list_agents(request: web.Request) -> web.Response:
    found = await _tickets(request).list_agents()
    return web.json_response({"items": [a.to_dict() for a in found]})


@routes.get("/api/v1/agents/{id}")
@requires(Role.AGENT)
async def get_agent(request: web.Request) -> web.Response:
    agent_id = current_user(request).id if request.match_info["id"] == "me" else path_id(request)
    return web.json_response((await _tickets(request).get_agent(agent_id)).to_dict())


@routes.patch("/api/v1/agents/{id}")
@requires(Role.ADMIN)
async def update_agent(request: web.Request) -> web.Response:
    """Profile: team, skills, capacity, senior, slack_user_id (duty has its own endpoint)."""
    body = await json_body(request)
    if "on_duty" in body:
        raise InvalidInput("use POST /api/v1/agents/{id}/duty to change on_duty (it reroutes tickets)")
    agent_id = path_id(request)
    details = {k: v for k, v in body.items() if k != "slack_user_id"}
    agent = await _tickets(request).update_agent(
        agent_id, body, audit=audit_entry(request, "agent.update", "user", agent_id, **details)
    )
    return web.json_response(agent.to_dict())


@routes.post("/api/v1/agents/{id}/duty")
@requires(Role.AGENT)
async def set_duty(request: web.Request) -> web.Response:
    """``{"on_duty": true|false}``; ``me`` for oneself, an id for admins."""
    body = await json_body(request)
    on_duty = field(body, "on_duty", bool)
    user = current_user(request)
    agent_id = user.id if request.match_info["id"] == "me" else path_id(request)
    if agent_id != user.id and not user.role.allows(Role.ADMIN):
        raise Forbidden("only admins change another agent's duty")
    agent = await _tickets(request).set_duty(
        agent_id, on_duty, actor_id=user.id, audit=audit_entry(request, "agent.duty", "user", agent_id, on_duty=on_duty)
    )
    return web.json_response(agent.to_dict())


# --- routing rules and SLA ---------------------------------------------------------------


@routes.get("/api/v1/routing/rules")
@requires(Role.AGENT)
async def get_rules(request: web.Request) -> web.Response:
    found = await request.app[keys.DATABASE].read(list_rules)
    return web.json_response({"items": [r.to_dict() for r in found]})


@routes.post("/api/v1/routing/rules")
@requires(Role.ADMIN)
async def create_rule(request: web.Request) -> web.Response:
    """``{"kind": "keyword", "params": {"words": ["refund"]}, "priority": "high", "team": "billing", "handoff": true}``;
    kinds: keyword (words), attribute (key, values), repeat (hours, count)."""
    body = await json_body(request)
    entry = audit_entry(request, "routing_rule.create", "routing_rule")
    rule = await request.app[keys.DATABASE].write(
        audited(add_rule, entry, lambda rule: {"target_id": rule.id}), body, now=request.app[keys.CLOCK].now()
    )
    _tickets(request).rules_changed()
    return web.json_response(rule.to_dict(), status=201)


@routes.delete("/api/v1/routing/rules/{id}")
@requires(Role.ADMIN)
async def remove_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request)
    entry = audit_entry(request, "routing_rule.delete", "routing_rule", rule_id)
    await request.app[keys.DATABASE].write(audited(delete_rule, entry), rule_id)
    _tickets(request).rules_changed()
    return web.json_response({"deleted": rule_id})


@routes.get("/api/v1/sla/policies")
@requires(Role.VIEWER)
async def sla_policies(request: web.Request) -> web.Response:
    policies = _tickets(request).slas
    return web.json_response({p.value: policies[p].to_dict() for p in Priority if p in policies})
