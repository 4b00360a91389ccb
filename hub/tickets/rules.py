"""Routing rules in the database: list, add (validated by ``routing``), delete.
``hub.tickets.routing`` stays the pure decision over them. A change bumps
the rules' shared version in its transaction, so every instance re-reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import InvalidInput, NotFound
from hub.models import Priority
from hub.storage.schema import routing_rules
from hub.tickets import routing
from hub.versions import ROUTING_RULES, bump


def list_rules(conn: Connection) -> list[routing.Rule]:
    return [
        routing.Rule(
            id=r.id,
            kind=r.kind,
            params=dict(r.params),
            priority=Priority(r.priority),
            team=r.team,
            handoff=r.handoff,
            enabled=r.enabled,
        )
        for r in conn.execute(sa.select(routing_rules).order_by(routing_rules.c.id))
    ]


def add_rule(conn: Connection, body: dict[str, Any], *, now: datetime) -> routing.Rule:
    kind, params, priority = routing.validate_rule(body.get("kind"), body.get("params"), body.get("priority"))
    team = body.get("team")
    if team is not None and (not isinstance(team, str) or not team.strip()):
        raise InvalidInput("team must be a non-empty string")
    handoff = body.get("handoff", True)
    if not isinstance(handoff, bool):
        raise InvalidInput("handoff must be true or false")
    new_id = conn.execute(
        sa.insert(routing_rules)
        .values(
            kind=kind,
            params=params,
            priority=priority.value,
            team=team,
            handoff=handoff,
            enabled=True,
            created_at=now,
        )
        .returning(routing_rules.c.id)
    ).scalar_one()
    bump(conn, ROUTING_RULES)  # every instance's cached rules (TicketService.policy)
    return next(r for r in list_rules(conn) if r.id == new_id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    if conn.execute(sa.delete(routing_rules).where(routing_rules.c.id == rule_id)).rowcount == 0:
        raise NotFound(f"rule {rule_id} does not exist")
    bump(conn, ROUTING_RULES)
