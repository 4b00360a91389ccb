"""One durable work queue over a table: the outbox, Slack jobs, bot jobs and webhook deliveries.

A row is work that must happen, written in the same transaction as the
change that causes it. A worker claims due rows with a lease (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so concurrent claimers never share a row),
works them and records the result:

- success -> the spec's done status (``done``, ``delivered`` for the outbox);
- retryable failure -> back to ``pending`` at a later ``next_attempt_at``
  (full-jitter backoff, or the error's ``retry_after``);
- permanent failure or the last attempt -> ``dead``, listed and requeued by
  an admin.

A crash mid-job leaves its lease to expire; the row is then claimed again.
Rows of one group (a conversation, a ticket) go strictly in order: a row is
claimed only when no older row of its group is still pending or running.

Every table has ``id``, ``status``, ``attempts``, ``next_attempt_at``,
``lease_until``, ``last_error``, ``created_at`` and ``updated_at``; a spec
names the rest. The statements are built once per dialect, since the
outbox's claim runs on every pass of the hot path.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from hub.errors import ChannelSendError, NotFound
from hub.storage import insert_ignore

PENDING, DEAD = "pending", "dead"
# Bulky or internal: what the admin list never shows.
UNLISTED = ("payload", "lease_until", "updated_at")


class Claimed(Protocol):
    """What a queue's row mapper must give back: the row's id and the attempt it is on."""

    @property
    def id(self) -> int: ...

    @property
    def attempts(self) -> int: ...


Item = TypeVar("Item", bound=Claimed)


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): U(0, min(cap, base*2^n))."""
    return (rng or random).uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))


@dataclass(frozen=True)
class QueueSpec(Generic[Item]):
    name: str  # the queue's name in the admin API
    table: sa.Table
    group: str  # column: rows sharing its value run in order (NULL: a group of its own)
    item: type[Item]  # a dataclass, built from the claimed row's columns of its field names
    noun: str  # for error messages: "no dead {noun} 7"
    unlisted: tuple[str, ...] = ()  # columns the admin list leaves out besides UNLISTED
    done: str = "done"
    running: str = "sending"
    # Columns written on success, from the handler's result by ``done_values``.
    done_columns: tuple[str, ...] = ()
    done_values: Callable[[Any], dict[str, Any]] | None = None
    # Same-transaction work when a row is done, dead, or requeued by an admin.
    on_done: Callable[[Connection, Item, Any], None] | None = None
    on_dead: Callable[[Connection, Item, ChannelSendError], None] | None = None
    on_requeue: Callable[[Connection, Row[Any]], None] | None = None
    statuses: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "statuses", (PENDING, self.running, self.done, DEAD))


class Queue(Generic[Item]):
    def __init__(self, spec: QueueSpec[Item]) -> None:
        self.spec = spec
        self.name = spec.name
        table = self.table = spec.table
        self._group = table.c[spec.group]
        self._fields = tuple(f.name for f in dataclasses.fields(spec.item))  # type: ignore[arg-type]  # Item is bound to a protocol, not known to be a dataclass
        hidden = set(UNLISTED) | set(spec.unlisted)
        self.columns = tuple(column.name for column in table.columns if column.name not in hidden)
        stamp = table.c.updated_at.type
        self._claim = {lock: self._claim_statements(lock) for lock in (False, True)}
        # A worker records only on the row it still holds: one deleted under it
        # (an erasure) may have given its id to a new row (SQLite reuses the
        # highest rowid), which must not be marked in its place.
        held = sa.and_(table.c.id == sa.bindparam("job_id"), table.c.status == spec.running)
        self._done = (
            sa.update(table)
            .where(held)
            .values(
                status=spec.done,
                lease_until=None,
                last_error=None,
                updated_at=sa.bindparam("now", type_=stamp),
                **{column: sa.bindparam(column) for column in spec.done_columns},
            )
        )
        failed = {
            "last_error": sa.bindparam("error"),
            "lease_until": None,
            "updated_at": sa.bindparam("now", type_=stamp),
        }
        self._retry = (
            sa.update(table)
            .where(held)
            .values(status=PENDING, next_attempt_at=sa.bindparam("retry_at", type_=stamp), **failed)
        )
        self._dead = sa.update(table).where(held).values(status=DEAD, **failed)

    def _claim_statements(self, lock: bool) -> tuple[Any, Any, Any]:
        table, spec = self.table, self.spec
        older = table.alias("older")
        blocked = (
            sa.select(older.c.id)
            .where(
                older.c[spec.group] == self._group,
                older.c.id < table.c.id,
                older.c.status.in_((PENDING, spec.running)),
            )
            .exists()
        )
        now = sa.bindparam("now", type_=table.c.next_attempt_at.type)
        due = sa.or_(
            sa.and_(table.c.status == PENDING, table.c.next_attempt_at <= now),
            sa.and_(table.c.status == spec.running, table.c.lease_until < now),
        )
        select = sa.select(table.c.id).where(due, ~blocked).order_by(table.c.id).limit(sa.bindparam("limit"))
        if lock:
            select = select.with_for_update(skip_locked=True, of=table)
        ids: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
        claim = (
            sa.update(table)
            .where(table.c.id.in_(ids))
            .values(
                status=spec.running,
                lease_until=sa.bindparam("lease_until", type_=table.c.lease_until.type),
                attempts=table.c.attempts + 1,
                updated_at=now,
            )
        )
        load = sa.select(table).where(table.c.id.in_(ids)).order_by(table.c.id)
        return select, claim, load

    # --- the worker's side ---------------------------------------------------------------
    def group_of(self, item: Item) -> Hashable:
        group = getattr(item, self.spec.group)
        return group if group is not None else ("job", item.id)

    def claim_due(self, conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[Item]:
        select, claim, load = self._claim[conn.dialect.name == "postgresql"]
        ids = list(conn.execute(select, {"now": now, "limit": limit}).scalars())
        if not ids:
            return []
        conn.execute(claim, {"ids": ids, "now": now, "lease_until": now + lease})
        make, fields = self.spec.item, self._fields
        return [make(**{name: row._mapping[name] for name in fields}) for row in conn.execute(load, {"ids": ids})]

    def mark_done(self, conn: Connection, item: Item, result: Any, now: datetime) -> None:
        values = self.spec.done_values(result) if self.spec.done_values is not None else {}
        if not conn.execute(self._done, {"job_id": item.id, "now": now, **values}).rowcount:
            return  # deleted meanwhile (its cause erased): nothing to record
        if self.spec.on_done is not None:
            self.spec.on_done(conn, item, result)

    def mark_failed(
        self, conn: Connection, item: Item, error: ChannelSendError, retry_at: datetime | None, now: datetime
    ) -> None:
        """Back to pending at ``retry_at``; dead when it is None."""
        params = {"job_id": item.id, "error": error.message[:2000], "now": now}
        if retry_at is not None:
            conn.execute(self._retry, {**params, "retry_at": retry_at})
            return
        if not conn.execute(self._dead, params).rowcount:
            return  # deleted meanwhile
        if self.spec.on_dead is not None:
            self.spec.on_dead(conn, item, error)

    # --- the producer's side -------------------------------------------------------------
    def enqueue(
        self,
        conn: Connection,
        values: dict[str, Any],
        now: datetime,
        *,
        coalesce: tuple[str, ...] = (),
        dedup: bool = False,
        due: datetime | None = None,
    ) -> int | None:
        """Add a row in the caller's transaction, to run from ``due`` (default
        now). Returns None, adding nothing, when a pending row agrees with
        ``values`` on every ``coalesce`` column, or when ``dedup`` and a unique
        column already holds the value."""
        table = self.table
        if coalesce:
            waiting = conn.execute(
                sa.select(table.c.id)
                .where(table.c.status == PENDING, *(table.c[column] == values[column] for column in coalesce))
                .limit(1)
            ).first()
            if waiting is not None:
                return None
        row = {
            **values,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": due or now,
            "created_at": now,
            "updated_at": now,
        }
        if dedup:
            stmt = insert_ignore(conn, table).values(**row).on_conflict_do_nothing().returning(table.c.id)
        else:
            stmt = sa.insert(table).values(**row).returning(table.c.id)
        return conn.execute(stmt).scalar_one_or_none()

    # --- the admin's side ----------------------------------------------------------------
    def depth(self, conn: Connection) -> dict[str, int]:
        counts = dict.fromkeys(self.spec.statuses, 0)
        found = conn.execute(sa.select(self.table.c.status, sa.func.count()).group_by(self.table.c.status))
        counts.update({status: n for status, n in found})
        return counts

    def list(self, conn: Connection, status: str | None, limit: int) -> list[dict[str, Any]]:
        stmt = sa.select(self.table).order_by(self.table.c.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(self.table.c.status == status)
        return [{column: _json(getattr(row, column)) for column in self.columns} for row in conn.execute(stmt)]

    def requeue_dead(self, conn: Connection, job_id: int, now: datetime) -> None:
        """A dead row starts over: pending now, attempts from zero."""
        table = self.table
        row = conn.execute(
            sa.update(table)
            .where(table.c.id == job_id, table.c.status == DEAD)
            .values(status=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
            .returning(table)
        ).first()
        if row is None:
            raise NotFound(f"no dead {self.spec.noun} {job_id}")
        if self.spec.on_requeue is not None:
            self.spec.on_requeue(conn, row)


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
