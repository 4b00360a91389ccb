"""The supervisor's view (``/console/supervisor``): who is on duty and how
loaded, the queue by priority and team, the tickets near or past their SLA,
and reassigning any of them.

What it reads, in one transaction (``board``): the agents with their load
and capacity (the routing's own bookkeeping, ``agent_profiles``), the open
tickets (``AT_RISK_SCAN`` of them, the most pressing deadlines first) and the
queue's counts by priority and team. The SLA state of a ticket is the
inbox's (``hub.console.inbox.sla_of``), so both pages, and the Slack card,
agree on what is red and what is amber.

Reassigning goes through ``TicketService.assign`` (what the REST API and
the Slack desk call), audited ``via="console"``: the ticket's Slack card
follows, the old and new assignee's loads move, and the live stream tells
every open console. A form per ticket does it without a script; with one,
a ticket can be dragged onto an agent, or picked with ``a`` and an agent
chosen from the keyboard.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.audit import Actor, Audit
from hub.console.inbox import Sla, SlaPolicy, contact_label, sla_of, sla_policy
from hub.console.render import render
from hub.console.sessions import require_user
from hub.errors import InvalidInput, Unavailable
from hub.inputs import parse_id
from hub.models import Priority, Role
from hub.storage.schema import contacts, identities, tickets
from hub.tickets import agents as agents_tx
from hub.tickets.model import TicketStatus
from hub.tickets.service import TicketService

routes = web.RouteTableDef()

PATH = "/console/supervisor"
# Open tickets read for the at-risk list and the queue, by nearest deadline.
# A team with more open tickets than this sees the most pressing ones.
AT_RISK_SCAN = 500
QUEUE_SHOWN = 100


@dataclass(frozen=True, slots=True)
class AgentLine:
    id: int
    name: str
    team: str
    on_duty: bool
    open_tickets: int
    capacity: int

    @property
    def load_percent(self) -> int:
        return min(100, round(100 * self.open_tickets / self.capacity)) if self.capacity > 0 else 100

    @property
    def full(self) -> bool:
        return self.open_tickets >= self.capacity


@dataclass(frozen=True, slots=True)
class TicketLine:
    id: int
    conversation_id: int
    contact: str
    priority: str
    team: str
    assignee_id: int | None
    assignee: str | None
    summary: str
    sla: Sla | None
    snoozed: bool


@dataclass(frozen=True, slots=True)
class Board:
    agents: list[AgentLine]
    queue: list[TicketLine]
    at_risk: list[TicketLine]
    queue_counts: dict[tuple[str, str], int]  # (team, priority) -> unassigned open tickets
    teams: list[str]
    priorities: list[str]
    open_tickets: int

    @property
    def on_duty(self) -> int:
        return sum(1 for agent in self.agents if agent.on_duty)


def _deadline() -> sa.ColumnElement[Any]:
    """The deadline that matters now: the first response until there is one, then the resolution."""
    return sa.case(
        (
            tickets.c.first_response_at.is_(None),
            sa.func.coalesce(tickets.c.first_response_due, tickets.c.resolution_due),
        ),
        else_=tickets.c.resolution_due,
    )


def board(conn: Connection, *, now: datetime, sla: SlaPolicy, default_team: str, default_capacity: int) -> Board:
    """Everything the page shows, read at once."""
    agents = [
        AgentLine(a.id, a.user.name, a.team, a.on_duty, a.open_tickets, a.capacity)
        for a in agents_tx.list_agents(conn, default_team=default_team, default_capacity=default_capacity)
    ]
    names = {agent.id: agent.name for agent in agents}
    deadline = _deadline()
    open_rows = conn.execute(
        sa.select(tickets)
        .where(tickets.c.status == TicketStatus.OPEN.value)
        .order_by(deadline.is_(None), deadline, tickets.c.id)
        .limit(AT_RISK_SCAN)
    ).all()
    counts = Counter(
        (row.team, row.priority)
        for row in conn.execute(
            sa.select(tickets.c.team, tickets.c.priority).where(
                tickets.c.status == TicketStatus.OPEN.value, tickets.c.assignee_id.is_(None)
            )
        )
    )
    total_open = conn.execute(
        sa.select(sa.func.count()).select_from(tickets).where(tickets.c.status == TicketStatus.OPEN.value)
    ).scalar_one()
    labels = _contact_labels(conn, {row.contact_id for row in open_rows})
    lines = [
        TicketLine(
            id=row.id,
            conversation_id=row.conversation_id,
            contact=labels.get(row.contact_id, f"Contact #{row.contact_id}"),
            priority=row.priority,
            team=row.team,
            assignee_id=row.assignee_id,
            assignee=names.get(row.assignee_id) if row.assignee_id is not None else None,
            summary=" ".join((row.summary or "").split())[:140],
            sla=sla_of(row, now, sla),
            snoozed=row.snoozed_until is not None,
        )
        for row in open_rows
    ]
    queue = sorted(
        (line for line in lines if line.assignee_id is None),
        key=lambda line: (Priority(line.priority).rank, line.id),
    )[:QUEUE_SHOWN]
    at_risk = [line for line in lines if line.sla is not None and line.sla.state in ("breached", "close")]
    at_risk.sort(key=lambda line: line.sla.left if line.sla is not None else 0)
    teams = sorted({team for team, _ in counts} | {agent.team for agent in agents})
    priorities = [p.value for p in sorted(Priority, key=lambda p: p.rank)]
    return Board(agents, queue, at_risk, dict(counts), teams, priorities, total_open)


def _contact_labels(conn: Connection, contact_ids: set[int]) -> dict[int, str]:
    if not contact_ids:
        return {}
    ids = sorted(contact_ids)
    names = dict(conn.execute(sa.select(contacts.c.id, contacts.c.name).where(contacts.c.id.in_(ids))).all())
    addresses: dict[int, list[tuple[str, str]]] = {}
    for row in conn.execute(
        sa.select(identities.c.contact_id, identities.c.channel, identities.c.address)
        .where(identities.c.contact_id.in_(ids))
        .order_by(identities.c.id)
    ):
        addresses.setdefault(row.contact_id, []).append((row.channel, row.address))
    return {cid: contact_label(cid, names.get(cid), addresses.get(cid, [])) for cid in ids}


def _tickets(request: web.Request) -> TicketService:
    service = request.app.get(keys.TICKETS)
    if service is None:
        raise Unavailable("tickets are not running")
    return service


async def _board(request: web.Request) -> Board:
    service = _tickets(request)
    settings = request.app[keys.SETTINGS]
    return await request.app[keys.DATABASE].read(
        board,
        now=service.clock.now(),
        sla=sla_policy(settings),
        default_team=settings.ticket_default_team,
        default_capacity=settings.ticket_default_capacity,
    )


@routes.get(PATH)
async def supervisor_page(request: web.Request) -> web.Response:
    user = await require_user(request, Role.VIEWER)
    template = "supervisor_board.html" if request.query.get("fragment") == "board" else "supervisor.html"
    return render(
        request,
        template,
        board=await _board(request),
        can_assign=user.role.allows(Role.AGENT),
    )


@routes.post(PATH + "/tickets/{id}/assign")
async def assign(request: web.Request) -> web.StreamResponse:
    """Form field ``assignee``: an agent's id, or empty for back to the queue."""
    user = await require_user(request, Role.AGENT)
    ticket_id = parse_id(request.match_info["id"])
    if ticket_id is None:
        raise InvalidInput("no such ticket id")
    form = await request.post()
    raw = str(form.get("assignee", "")).strip()
    assignee = parse_id(raw) if raw else None
    if raw and assignee is None:
        raise InvalidInput("assignee must be an agent's id, or empty to return the ticket to the queue")
    audit = Audit(Actor(user.id, "console"), "ticket.assign", "ticket", ticket_id, {"assignee_id": assignee})
    ticket = await _tickets(request).assign(ticket_id, assignee, actor_id=user.id, audit=audit)
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"id": ticket.id, "assignee_id": ticket.assignee_id})
    raise web.HTTPSeeOther(PATH)
