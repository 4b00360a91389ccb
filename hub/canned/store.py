"""The ``canned_replies`` table: read, create, change and delete replies,
each change with its audit row (``hub.audit``), in one transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.audit import Audit, record
from hub.canned import templates
from hub.errors import Conflict, InvalidInput, NotFound
from hub.models import _Serialisable
from hub.storage import insert_ignore
from hub.storage.schema import canned_replies

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
EDITABLE = ("title", "body", "team")


@dataclass(frozen=True, slots=True)
class CannedReply(_Serialisable):
    id: int
    name: str
    title: str
    body: str
    team: str | None
    created_by: int | None
    updated_by: int | None
    created_at: datetime
    updated_at: datetime


def _reply(row: Any) -> CannedReply:
    return CannedReply(
        id=row.id,
        name=row.name,
        title=row.title,
        body=row.body,
        team=row.team,
        created_by=row.created_by,
        updated_by=row.updated_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            "'name' must be a slug: lower-case letters, digits and hyphens, at most 64, starting with a letter or digit",
            details={"field": "name"},
        )
    return name


def _check(values: dict[str, Any]) -> None:
    if "title" in values and not str(values["title"]).strip():
        raise InvalidInput("'title' must not be blank", details={"field": "title"})
    if "body" in values:
        if not str(values["body"]).strip():
            raise InvalidInput("'body' must not be blank", details={"field": "body"})
        templates.check(values["body"])
    if values.get("team") is not None and not str(values["team"]).strip():
        raise InvalidInput("'team' must not be blank (null: every team's)", details={"field": "team"})


def list_replies(conn: Connection, *, team: str | None = None) -> list[CannedReply]:
    """Every reply by name; with ``team``, that team's and those of every team."""
    stmt = sa.select(canned_replies).order_by(canned_replies.c.name)
    if team:
        stmt = stmt.where(sa.or_(canned_replies.c.team.is_(None), canned_replies.c.team == team))
    return [_reply(r) for r in conn.execute(stmt)]


def get_reply(conn: Connection, name: str) -> CannedReply:
    row = conn.execute(sa.select(canned_replies).where(canned_replies.c.name == name)).first()
    if row is None:
        raise NotFound(f"no canned reply named {name!r}")
    return _reply(row)


def create_reply(
    conn: Connection, values: dict[str, Any], *, user_id: int | None, now: datetime, audit: Audit | None = None
) -> CannedReply:
    name = check_name(values["name"])
    _check(values)
    created = conn.execute(
        insert_ignore(conn, canned_replies)
        .values(
            name=name,
            title=values["title"].strip(),
            body=values["body"],
            team=values.get("team"),
            created_by=user_id,
            updated_by=user_id,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(canned_replies.c.id)
    ).scalar_one_or_none()
    if created is None:
        raise Conflict(f"a canned reply named {name!r} exists already", details={"field": "name"})
    if audit is not None:
        record(conn, audit, target_id=name)
    return get_reply(conn, name)


def update_reply(
    conn: Connection,
    name: str,
    changes: dict[str, Any],
    *,
    user_id: int | None,
    now: datetime,
    audit: Audit | None = None,
) -> CannedReply:
    get_reply(conn, name)
    values = {key: changes[key] for key in EDITABLE if key in changes}
    _check(values)
    if "title" in values:
        values["title"] = values["title"].strip()
    conn.execute(
        sa.update(canned_replies)
        .where(canned_replies.c.name == name)
        .values(**values, updated_by=user_id, updated_at=now)
    )
    if audit is not None:
        record(conn, audit, target_id=name, fields=sorted(values))
    return get_reply(conn, name)


def delete_reply(conn: Connection, name: str, *, audit: Audit | None = None) -> None:
    if not conn.execute(sa.delete(canned_replies).where(canned_replies.c.name == name)).rowcount:
        raise NotFound(f"no canned reply named {name!r}")
    if audit is not None:
        record(conn, audit, target_id=name)
