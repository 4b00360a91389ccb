"""The audit log: who did what, through which door, written with the change.

Every agent or admin action (replies, notes, ticket claim/assign/resolve/
priority/snooze, conversation changes, contact merge/update/export/erasure,
users and tokens, duty and routing) records one ``audit_log`` row *in the
transaction that makes the change*: a change without its row, or a row
without its change, cannot be committed. ``Actor`` says who (a user id; the
command line has none, so the OS user goes in the details) and ``via`` says
the door: ``api``, ``slack``, ``cli`` or ``console``. Details hold ids and settings,
never message text or a customer's personal data.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.events import utcnow
from hub.storage.schema import audit_log

T = TypeVar("T")
VIA = ("api", "slack", "cli", "console", "automation")


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: int | None
    via: str  # api | slack | cli | console

    @classmethod
    def cli(cls) -> Actor:
        return cls(None, "cli")


@dataclass(frozen=True, slots=True)
class Audit:
    """One entry to record with a change (``audited``)."""

    actor: Actor
    action: str
    target_type: str | None = None
    target_id: Any = None
    details: dict[str, Any] = field(default_factory=dict)


def record(conn: Connection, entry: Audit, *, target_id: Any = None, **details: Any) -> None:
    """Write ``entry`` in the caller's transaction (``target_id``/``details``
    complete what was only known once the change ran)."""
    merged = {**entry.details, **details}
    if entry.actor.via == "cli":
        merged.setdefault("os_user", _os_user())
    target = target_id if target_id is not None else entry.target_id
    conn.execute(
        sa.insert(audit_log).values(
            user_id=entry.actor.user_id,
            via=entry.actor.via,
            action=entry.action,
            target_type=entry.target_type,
            target_id=str(target) if target is not None else None,
            details=merged,
            created_at=utcnow(),
        )
    )


def audited(
    fn: Callable[..., T], entry: Audit | None, describe: Callable[[T], dict[str, Any]] | None = None
) -> Callable[..., T]:
    """``fn`` as a transaction that also records ``entry`` (None: just ``fn``);
    ``describe(result)`` adds ``target_id`` or details known only afterwards."""
    if entry is None:
        return fn

    def run(conn: Connection, *args: Any, **kwargs: Any) -> T:
        result = fn(conn, *args, **kwargs)
        record(conn, entry, **(describe(result) if describe is not None else {}))
        return result

    return run


def entry(row: Any) -> dict[str, Any]:
    """One audit row as the API and the contact export show it (with its door)."""
    return {
        "id": row.id,
        "user_id": row.user_id,
        "via": row.via,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "details": row.details,
        "created_at": row.created_at.isoformat(),
    }


def list_entries(
    conn: Connection,
    *,
    limit: int,
    action: str | None = None,
    via: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> list[dict[str, Any]]:
    """The newest entries first; each filter given narrows them."""
    stmt = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    for column, wanted in (
        (audit_log.c.action, action),
        (audit_log.c.via, via),
        (audit_log.c.target_type, target_type),
        (audit_log.c.target_id, target_id),
    ):
        if wanted is not None:
            stmt = stmt.where(column == wanted)
    return [entry(r) for r in conn.execute(stmt)]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
