"""``DriverStatement`` stores and reads exactly what ``Connection.execute``
would, on every backend (SQLite runs it on the driver's cursor; PostgreSQL
through SQLAlchemy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.storage import open_database
from hub.storage.driver import DriverStatement
from hub.storage.schema import contacts, conversations, messages

NOW = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)

INSERT_CONTACT = DriverStatement(
    sa.insert(contacts)
    .values({key: sa.bindparam(key) for key in ("name", "attributes", "tags", "created_at", "updated_at")})
    .returning(contacts.c.id)
)
INSERT_MESSAGE = DriverStatement(
    sa.insert(messages)
    .values({c.key: sa.bindparam(c.key) for c in messages.c if c.key != "id"})
    .returning(messages.c.id, messages.c.created_at)
)
MESSAGES_OF = DriverStatement(
    sa.select(messages).where(messages.c.contact_id == sa.bindparam("contact_id")).order_by(messages.c.id)
)
# A literal inside the statement (the CASE) and one parameter used twice.
TOUCH = DriverStatement(
    sa.update(conversations)
    .where(conversations.c.id == sa.bindparam("conversation_id"))
    .values(
        updated_at=sa.bindparam("now", type_=conversations.c.updated_at.type),
        last_message_at=sa.bindparam("now", type_=conversations.c.updated_at.type),
        status=sa.case((conversations.c.status == "pending", "open"), else_=conversations.c.status),
    )
)


def message_values(contact_id: int, conversation_id: int, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "contact_id": contact_id,
        "channel": "fake",
        "direction": "inbound",
        "kind": "message",
        "author_kind": "customer",
        "author_id": None,
        "body": f"body {n} — ünïcode ✓",
        "attachments": [{"name": "a.png", "size": n}],
        "external_id": f"x-{n}",
        "delivery_status": "received",
        "delivery_error": None,
        "meta": {"n": n, "nested": {"list": [1, 2.5, None, True]}},
        "created_at": NOW + timedelta(seconds=n),
        **extra,
    }


@pytest.mark.asyncio
async def test_driver_statements_match_connection_execute(database_url: str) -> None:
    db = open_database(database_url)

    def scenario(conn: Any) -> dict[str, Any]:
        contact = INSERT_CONTACT.first(
            conn, {"name": None, "attributes": {"plan": "pro"}, "tags": ["vip"], "created_at": NOW, "updated_at": NOW}
        )
        conversation_id = conn.execute(
            sa.insert(conversations)
            .values(
                contact_id=contact.id,
                channel="fake",
                status="pending",
                priority="normal",
                handler="bot",
                created_at=NOW,
                updated_at=NOW,
            )
            .returning(conversations.c.id)
        ).scalar_one()
        first = INSERT_MESSAGE.first(conn, message_values(contact.id, conversation_id, 1))
        INSERT_MESSAGE.first(
            conn, message_values(contact.id, conversation_id, 2, meta={}, attachments=[], external_id=None)
        )
        TOUCH.execute_many(conn, [{"conversation_id": conversation_id, "now": NOW + timedelta(hours=1)}])
        via_driver = MESSAGES_OF.all(conn, {"contact_id": contact.id})
        via_sqlalchemy = conn.execute(MESSAGES_OF.statement, {"contact_id": contact.id}).all()
        touched = conn.execute(sa.select(conversations).where(conversations.c.id == conversation_id)).one()
        stored_contact = conn.execute(sa.select(contacts).where(contacts.c.id == contact.id)).one()
        return {
            "first": first,
            "driver": via_driver,
            "sqlalchemy": via_sqlalchemy,
            "touched": touched,
            "contact": stored_contact,
            "contact_id": contact.id,
            "conversation_id": conversation_id,
        }

    try:
        got = await db.write(scenario)
    finally:
        await db.close()

    assert got["first"].created_at == NOW + timedelta(seconds=1)
    assert [tuple(r) for r in got["driver"]] == [tuple(r) for r in got["sqlalchemy"]]
    first, second = got["driver"]
    assert first.body == "body 1 — ünïcode ✓" and first.attachments == [{"name": "a.png", "size": 1}]
    assert first.meta == {"n": 1, "nested": {"list": [1, 2.5, None, True]}}
    assert first.created_at == NOW + timedelta(seconds=1) and first.created_at.tzinfo is not None
    assert second.external_id is None and second.meta == {} and second.attachments == []
    assert got["touched"].status == "open"
    assert got["touched"].updated_at == got["touched"].last_message_at == NOW + timedelta(hours=1)
    assert got["contact"].attributes == {"plan": "pro"} and got["contact"].tags == ["vip"]


def test_driver_statement_refuses_expanding_parameters(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url.replace("+aiosqlite", ""))
    statement = DriverStatement(sa.select(messages.c.id).where(messages.c.id.in_(sa.bindparam("ids", expanding=True))))
    try:
        with engine.connect() as conn, pytest.raises(ValueError, match="expanding"):
            statement.all(conn, {"ids": [1, 2]})
    finally:
        engine.dispose()


def test_a_missing_parameter_is_an_error_not_a_null(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as conn, pytest.raises(KeyError, match="name"):
            INSERT_CONTACT.first(conn, {"attributes": {}, "tags": [], "created_at": NOW, "updated_at": NOW})
    finally:
        engine.dispose()
