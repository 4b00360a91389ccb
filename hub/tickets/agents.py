"""Agents: users with the agent or admin role, plus a routing profile
(team, skills, capacity, seniority, on-duty status) and their Slack id.

Functions here run inside one transaction (``Database.write``/``read``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import Conflict, InvalidInput, NotFound
from hub.events import utcnow
from hub.models import Role, User
from hub.storage import rows
from hub.storage.schema import agent_profiles, tickets, users
from hub.tickets.routing import AgentLoad

DEFAULT_CAPACITY = 8


@dataclass(frozen=True, slots=True)
class Agent:
    user: User
    team: str
    skills: list[str]
    capacity: int
    senior: bool
    on_duty: bool
    open_tickets: int

    @property
    def id(self) -> int:
        return self.user.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.user.id,
            "name": self.user.name,
            "email": self.user.email,
            "role": self.user.role.value,
            "slack_user_id": self.user.slack_user_id,
            "team": self.team,
            "skills": self.skills,
            "capacity": self.capacity,
            "senior": self.senior,
            "on_duty": self.on_duty,
            "open_tickets": self.open_tickets,
        }

    def load(self) -> AgentLoad:
        return AgentLoad(
            user_id=self.user.id,
            team=self.team,
            skills=frozenset(self.skills),
            capacity=self.capacity,
            senior=self.senior,
            on_duty=self.on_duty,
            open_tickets=self.open_tickets,
        )


def _agent(row: Any, *, default_team: str, default_capacity: int) -> Agent:
    has_profile = row.team is not None
    return Agent(
        user=rows.user(row),
        team=row.team if has_profile else default_team,
        skills=list(row.skills or []) if has_profile else [],
        capacity=row.capacity if has_profile else default_capacity,
        senior=bool(row.senior) if has_profile else False,
        on_duty=bool(row.on_duty) if has_profile else False,
        open_tickets=row.open_tickets if has_profile else 0,
    )


def _select() -> sa.Select[Any]:
    return (
        sa.select(
            *users.c,
            agent_profiles.c.team,
            agent_profiles.c.skills,
            agent_profiles.c.capacity,
            agent_profiles.c.senior,
            agent_profiles.c.on_duty,
            agent_profiles.c.open_tickets,
        )
        .select_from(users.outerjoin(agent_profiles, agent_profiles.c.user_id == users.c.id))
        .where(users.c.role.in_((Role.AGENT.value, Role.ADMIN.value)))
    )


def list_agents(conn: Connection, *, default_team: str, default_capacity: int) -> list[Agent]:
    found = conn.execute(_select().order_by(users.c.id))
    return [_agent(r, default_team=default_team, default_capacity=default_capacity) for r in found]


def get_agent(conn: Connection, user_id: int, *, default_team: str, default_capacity: int) -> Agent:
    row = conn.execute(_select().where(users.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"agent {user_id} does not exist (or is not an agent)")
    return _agent(row, default_team=default_team, default_capacity=default_capacity)


def agent_for_slack_user(
    conn: Connection, slack_user_id: str, *, default_team: str, default_capacity: int
) -> Agent | None:
    row = conn.execute(_select().where(users.c.slack_user_id == slack_user_id)).first()
    return _agent(row, default_team=default_team, default_capacity=default_capacity) if row is not None else None


def update_profile(
    conn: Connection,
    user_id: int,
    changes: dict[str, Any],
    *,
    default_team: str,
    default_capacity: int,
) -> Agent:
    """Change team, skills, capacity, senior, on_duty or slack_user_id."""
    allowed = {"team", "skills", "capacity", "senior", "on_duty", "slack_user_id"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
    agent = get_agent(conn, user_id, default_team=default_team, default_capacity=default_capacity)
    if "slack_user_id" in changes:
        slack_id = changes["slack_user_id"]
        if slack_id is not None and (not isinstance(slack_id, str) or not slack_id.strip()):
            raise InvalidInput("slack_user_id must be a non-empty string or null")
        taken = conn.execute(
            sa.select(users.c.id).where(users.c.slack_user_id == slack_id, users.c.id != user_id)
        ).first()
        if slack_id is not None and taken is not None:
            raise Conflict(f"Slack user {slack_id} is already mapped to user {taken.id}")
        conn.execute(sa.update(users).where(users.c.id == user_id).values(slack_user_id=slack_id))
    values: dict[str, Any] = {}
    if "team" in changes:
        if not isinstance(changes["team"], str) or not changes["team"].strip():
            raise InvalidInput("team must be a non-empty string")
        values["team"] = changes["team"].strip()
    if "skills" in changes:
        skills = changes["skills"]
        if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
            raise InvalidInput("skills must be a list of strings")
        values["skills"] = sorted({s.strip() for s in skills if s.strip()})
    if "capacity" in changes:
        capacity = changes["capacity"]
        if not isinstance(capacity, int) or isinstance(capacity, bool) or not 0 <= capacity <= 1000:
            raise InvalidInput("capacity must be an integer between 0 and 1000")
        values["capacity"] = capacity
    for flag in ("senior", "on_duty"):
        if flag in changes:
            if not isinstance(changes[flag], bool):
                raise InvalidInput(f"{flag} must be true or false")
            values[flag] = changes[flag]
    lock_routing(conn)  # before the agent's row: the lock always comes first
    _ensure_profile(conn, agent)
    if values:
        values["updated_at"] = utcnow()
        conn.execute(sa.update(agent_profiles).where(agent_profiles.c.user_id == user_id).values(**values))
    return get_agent(conn, user_id, default_team=default_team, default_capacity=default_capacity)


def _ensure_profile(conn: Connection, agent: Agent) -> None:
    exists = conn.execute(sa.select(agent_profiles.c.user_id).where(agent_profiles.c.user_id == agent.id)).first()
    if exists is None:
        conn.execute(
            sa.insert(agent_profiles).values(
                user_id=agent.id,
                team=agent.team,
                skills=agent.skills,
                capacity=agent.capacity,
                senior=agent.senior,
                on_duty=agent.on_duty,
                open_tickets=0,
                last_assigned_seq=0,
                updated_at=utcnow(),
            )
        )


def serves(conn: Connection, user_id: int, team: str) -> bool:
    """Does the agent work for ``team`` (their team, or one of their skills)?"""
    row = conn.execute(
        sa.select(agent_profiles.c.team, agent_profiles.c.skills).where(agent_profiles.c.user_id == user_id)
    ).first()
    return row is not None and (row.team == team or team in (row.skills or ()))


def candidate_loads(conn: Connection, *, team: str | None = None, urgent: bool = False) -> list[AgentLoad]:
    """On-duty agents with room, as routing sees them. With ``team``: only those
    who serve it (their team, or the team among their skills) and, for urgent
    tickets, every senior; filtered in SQL, so a decision reads a few rows."""
    stmt = (
        sa.select(
            agent_profiles.c.user_id,
            agent_profiles.c.team,
            agent_profiles.c.capacity,
            agent_profiles.c.senior,
            agent_profiles.c.open_tickets,
            agent_profiles.c.last_assigned_seq,
        )
        .join(users, users.c.id == agent_profiles.c.user_id)
        .where(
            agent_profiles.c.on_duty.is_(True),
            agent_profiles.c.open_tickets < agent_profiles.c.capacity,
            users.c.role.in_((Role.AGENT.value, Role.ADMIN.value)),
        )
    )
    skills = sa.cast(agent_profiles.c.skills, sa.Text)
    if team is not None:
        # JSON text on both backends; '"team"' only matches a whole list item.
        quoted = '%"' + team.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
        knows = skills.like(quoted, escape="\\")
        serves = sa.or_(agent_profiles.c.team == team, knows)
        stmt = stmt.where(sa.or_(serves, agent_profiles.c.senior.is_(True)) if urgent else serves)
        stmt = stmt.add_columns(sa.case((knows, True), else_=False).label("knows"))
    found = conn.execute(stmt).all()
    return [
        AgentLoad(
            user_id=r.user_id,
            team=r.team,
            skills=frozenset((team,)) if team is not None and r.knows else frozenset(),
            capacity=r.capacity,
            senior=r.senior,
            on_duty=True,
            open_tickets=r.open_tickets,
            last_assigned_seq=r.last_assigned_seq,
        )
        for r in found
    ]


def anyone_on_duty(conn: Connection) -> bool:
    return (
        conn.execute(
            sa.select(agent_profiles.c.user_id)
            .join(users, users.c.id == agent_profiles.c.user_id)
            .where(agent_profiles.c.on_duty.is_(True), users.c.role.in_((Role.AGENT.value, Role.ADMIN.value)))
            .limit(1)
        ).first()
        is not None
    )


# The key of the one transaction-scoped advisory lock routing takes on
# PostgreSQL (any constant of our own; "hub!" in ASCII).
ROUTING_LOCK_KEY = 0x68756221
_LOCK_ROUTING = sa.text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=ROUTING_LOCK_KEY)


def lock_routing(conn: Connection) -> None:
    """Hold the routing lock until the caller's transaction ends.

    Every transaction that changes an agent's load or decides where a ticket
    goes takes it before it reads what it decides on (and before it writes an
    agent's row, so the lock always comes first and never closes a cycle).
    On PostgreSQL this orders routing across connections and instances as
    SQLite's single writer does: a resolve and a handoff committing at once
    cannot each miss the other's row (the ticket left queued beside an idle
    agent), nor two resolves each lock the queue the other needed. Re-taking
    it in the same transaction is free."""
    if conn.dialect.name != "postgresql":
        return
    transaction = conn.get_transaction()
    if conn.info.get("routing_lock") is transaction:
        return
    conn.execute(_LOCK_ROUTING)
    conn.info["routing_lock"] = transaction


def book(conn: Connection, user_id: int | None, delta: int, *, stamp: bool = False, team: str = "support") -> None:
    """Adjust an agent's open-ticket count (and round-robin stamp) in the caller's
    transaction. A user given a ticket before having a profile gets one (off duty)."""
    if user_id is None:
        return
    lock_routing(conn)
    if (
        delta > 0
        and conn.execute(sa.select(agent_profiles.c.user_id).where(agent_profiles.c.user_id == user_id)).first() is None
    ):
        conn.execute(
            sa.insert(agent_profiles).values(
                user_id=user_id,
                team=team,
                skills=[],
                capacity=DEFAULT_CAPACITY,
                senior=False,
                on_duty=False,
                open_tickets=0,
                last_assigned_seq=0,
                updated_at=utcnow(),
            )
        )
    values: dict[str, Any] = {"open_tickets": sa.func.max(agent_profiles.c.open_tickets + delta, 0)}
    if conn.dialect.name == "postgresql":
        values["open_tickets"] = sa.func.greatest(agent_profiles.c.open_tickets + delta, 0)
    if stamp:
        # Microseconds since the epoch: increasing across restarts and instances
        # without a shared counter (ties fall back to the user id).
        values["last_assigned_seq"] = time.time_ns() // 1000
    conn.execute(sa.update(agent_profiles).where(agent_profiles.c.user_id == user_id).values(**values))


def take_slot(conn: Connection, user_id: int) -> bool:
    """Book one ticket on an on-duty agent only if they still have room: the
    conditional update is the claim (on PostgreSQL it locks the agent's row and
    re-checks the condition after a concurrent booking commits), so two
    instances routing at once never take an agent past capacity."""
    lock_routing(conn)
    values: dict[str, Any] = {
        "open_tickets": agent_profiles.c.open_tickets + 1,
        "last_assigned_seq": time.time_ns() // 1000,
    }
    done = conn.execute(
        sa.update(agent_profiles)
        .where(
            agent_profiles.c.user_id == user_id,
            agent_profiles.c.on_duty.is_(True),
            agent_profiles.c.open_tickets < agent_profiles.c.capacity,
        )
        .values(**values)
    )
    return bool(done.rowcount)


def anyone_with_room(conn: Connection) -> bool:
    """Is any on-duty agent below capacity? (a queue pass stops at once when not)"""
    return (
        conn.execute(
            sa.select(agent_profiles.c.user_id)
            .join(users, users.c.id == agent_profiles.c.user_id)
            .where(
                agent_profiles.c.on_duty.is_(True),
                agent_profiles.c.open_tickets < agent_profiles.c.capacity,
                users.c.role.in_((Role.AGENT.value, Role.ADMIN.value)),
            )
            .limit(1)
        ).first()
        is not None
    )


def recount_loads(conn: Connection) -> None:
    """Recompute every agent's open-ticket count from the tickets (start-up
    self-repair). A snoozed ticket does not count: it needs no work until it wakes."""
    lock_routing(conn)
    counts: dict[int, int] = dict(
        conn.execute(
            sa.select(tickets.c.assignee_id, sa.func.count())
            .where(tickets.c.status == "open", tickets.c.assignee_id.is_not(None), tickets.c.snoozed_until.is_(None))
            .group_by(tickets.c.assignee_id)
        ).all()
    )
    for user_id, current in conn.execute(sa.select(agent_profiles.c.user_id, agent_profiles.c.open_tickets)).all():
        wanted = counts.get(user_id, 0)
        if wanted != current:
            conn.execute(
                sa.update(agent_profiles).where(agent_profiles.c.user_id == user_id).values(open_tickets=wanted)
            )
