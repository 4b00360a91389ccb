"""Automation rules in the database, the YAML file's rules, and the runs queue.

Rules written through the API have ``source`` api; the rules of
``HUB_AUTOMATION_FILE`` are synchronised at start (``sync_file``): added,
changed, or deleted when gone from the file, and refused by the API's writes
(change them in the file, as with any provisioned configuration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection, Row

from hub.automation.rules import Rule, parse
from hub.errors import Conflict, InvalidInput, NotFound
from hub.jobs.queue import Queue, QueueSpec
from hub.storage.schema import automation_rules, automation_runs
from hub.versions import AUTOMATION_RULES, bump


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    rule_id: int
    conversation_id: int
    event: str
    event_key: str
    payload: dict[str, Any]
    step: int
    attempts: int


RUNS: Queue[Run] = Queue(
    QueueSpec(
        "automation", automation_runs, group="conversation_id", item=Run, noun="automation run", running="running"
    )
)


def _rule(row: Row[Any]) -> Rule:
    return Rule(
        id=row.id,
        name=row.name,
        when=row.event,
        conditions=dict(row.conditions),
        unless=dict(row.unless),
        actions=tuple(dict(action) for action in row.actions),
        silent_hours=row.silent_hours,
        enabled=row.enabled,
        description=row.description,
        source=row.source,
    )


def _values(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "description": rule.description,
        "event": rule.when,
        "silent_hours": rule.silent_hours,
        "conditions": dict(rule.conditions),
        "unless": dict(rule.unless),
        "actions": [dict(action) for action in rule.actions],
        "enabled": rule.enabled,
        "source": rule.source,
    }


def list_rules(conn: Connection, *, event: str | None = None, enabled_only: bool = False) -> list[Rule]:
    stmt = sa.select(automation_rules).order_by(automation_rules.c.id)
    if event is not None:
        stmt = stmt.where(automation_rules.c.event == event)
    if enabled_only:
        stmt = stmt.where(automation_rules.c.enabled.is_(True))
    return [_rule(row) for row in conn.execute(stmt)]


def get_rule(conn: Connection, rule_id: int) -> Rule:
    row = conn.execute(sa.select(automation_rules).where(automation_rules.c.id == rule_id)).first()
    if row is None:
        raise NotFound(f"automation rule {rule_id} does not exist")
    return _rule(row)


def _name_free(conn: Connection, name: str, rule_id: int | None = None) -> None:
    taken = conn.execute(sa.select(automation_rules.c.id).where(automation_rules.c.name == name)).scalar()
    if taken is not None and taken != rule_id:
        raise Conflict(f"an automation rule named {name!r} exists")


def create_rule(conn: Connection, body: Mapping[str, Any], *, now: datetime) -> Rule:
    rule = parse({**body, "source": "api"})
    _name_free(conn, rule.name)
    new_id = conn.execute(
        sa.insert(automation_rules)
        .values(**_values(rule), created_at=now, updated_at=now)
        .returning(automation_rules.c.id)
    ).scalar_one()
    bump(conn, AUTOMATION_RULES)  # every instance's cached rules (Automation.rules_changed)
    return get_rule(conn, new_id)


def update_rule(conn: Connection, rule_id: int, changes: Mapping[str, Any], *, now: datetime) -> Rule:
    """Change some of a rule's fields (the rest kept); the result is checked whole."""
    current = get_rule(conn, rule_id)
    _writable(current)
    body = current.to_json()
    body.pop("id")
    body.update(changes)
    if body.get("when") != "customer_silent" and "silent_hours" not in changes:
        body.pop("silent_hours", None)  # no longer a customer_silent rule
    rule = parse(body, source="api")
    _name_free(conn, rule.name, rule_id)
    conn.execute(
        sa.update(automation_rules).where(automation_rules.c.id == rule_id).values(**_values(rule), updated_at=now)
    )
    bump(conn, AUTOMATION_RULES)
    return get_rule(conn, rule_id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    _writable(get_rule(conn, rule_id))
    conn.execute(sa.delete(automation_rules).where(automation_rules.c.id == rule_id))
    bump(conn, AUTOMATION_RULES)


def _writable(rule: Rule) -> None:
    if rule.source == "file":
        raise Conflict(f"automation rule {rule.name!r} comes from HUB_AUTOMATION_FILE: change it there")


def load_file(path: Path) -> list[Rule]:
    """The file's rules (``rules:`` a list, or the list itself), each checked."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInput(f"HUB_AUTOMATION_FILE {path}: {err}") from None
    items = document.get("rules") if isinstance(document, dict) else document
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput(f"HUB_AUTOMATION_FILE {path}: expected a list of rules under 'rules:'")
    rules = [parse(item, source="file") for item in items]
    names = [rule.name for rule in rules]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise InvalidInput(f"HUB_AUTOMATION_FILE {path}: rule {dupes[0]!r} is named twice")
    return rules


def sync_file(conn: Connection, rules: list[Rule], *, now: datetime) -> dict[str, int]:
    """Make the file's rules the database's ``file`` rules: add, change, delete.
    A file rule may not take the name of an API rule (a clear error at start)."""
    existing = {rule.name: rule for rule in list_rules(conn)}
    counts = {"added": 0, "changed": 0, "deleted": 0}
    wanted = {rule.name for rule in rules}
    for rule in rules:
        have = existing.get(rule.name)
        if have is None:
            conn.execute(sa.insert(automation_rules).values(**_values(rule), created_at=now, updated_at=now))
            counts["added"] += 1
        elif have.source != "file":
            raise InvalidInput(f"HUB_AUTOMATION_FILE: rule {rule.name!r} exists already, made through the API")
        elif _values(have) != _values(rule):
            conn.execute(
                sa.update(automation_rules)
                .where(automation_rules.c.id == have.id)
                .values(**_values(rule), updated_at=now)
            )
            counts["changed"] += 1
    for name, have in existing.items():
        if have.source == "file" and name not in wanted:
            conn.execute(sa.delete(automation_rules).where(automation_rules.c.id == have.id))
            counts["deleted"] += 1
    if any(counts.values()):
        bump(conn, AUTOMATION_RULES)
    return counts


def list_runs(conn: Connection, *, rule_id: int | None, status: str | None, limit: int) -> list[dict[str, Any]]:
    stmt = sa.select(automation_runs).order_by(automation_runs.c.id.desc()).limit(limit)
    if rule_id is not None:
        stmt = stmt.where(automation_runs.c.rule_id == rule_id)
    if status is not None:
        stmt = stmt.where(automation_runs.c.status == status)
    return [
        {
            "id": row.id,
            "rule_id": row.rule_id,
            "conversation_id": row.conversation_id,
            "event": row.event,
            "event_key": row.event_key,
            "status": row.status,
            "step": row.step,
            "attempts": row.attempts,
            "last_error": row.last_error,
            "due_at": row.next_attempt_at.isoformat(),
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        }
        for row in conn.execute(stmt)
    ]


def advance(conn: Connection, run_id: int, step: int, now: datetime) -> None:
    """Record that the run's actions before ``step`` are done (a retry resumes there)."""
    conn.execute(sa.update(automation_runs).where(automation_runs.c.id == run_id).values(step=step, updated_at=now))
