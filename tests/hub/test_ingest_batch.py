"""The ingest batch form (``conversations.ingest_many``) and the SQLite
writer that uses it: it must store exactly what ``ingest`` one message at a
time would have, in the same order, for every kind of message a run can
hold."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.conversations import ingest as ingest_tx
from hub.conversations import transactions as conversations_tx
from hub.errors import InvalidInput
from hub.messages import InboundMessage
from hub.storage import SQLiteDatabase
from hub.storage.migrate import upgrade
from hub.storage.schema import bot_jobs, contacts, conversations, identities, messages

OPTIONS: dict[str, Any] = {"identity_kind": "fake", "reopen_window": timedelta(hours=72), "enqueue_bot": True}


def msg(sender: str, text: str, external_id: str | None = None, **extra: Any) -> InboundMessage:
    return InboundMessage(channel="fake", sender=sender, text=text, external_id=external_id, **extra)


def seed(conn: Any) -> None:
    """Known senders in every state a run has to tell apart."""
    for sender in ("known-1", "known-2", "resolved-1", "pending-1", "snoozed-1", "old-resolved"):
        ingest_tx.ingest(conn, msg(sender, f"{sender} says hi", f"seed-{sender}"), **OPTIONS)
    by_sender = {
        row.address: row.id
        for row in conn.execute(
            sa.select(identities.c.address, conversations.c.id).join(
                conversations, conversations.c.identity_id == identities.c.id
            )
        )
    }
    conversations_tx.update_conversation(conn, by_sender["resolved-1"], {"status": "resolved"}, actor_id=None)
    conversations_tx.update_conversation(conn, by_sender["pending-1"], {"status": "pending"}, actor_id=None)
    conversations_tx.update_conversation(conn, by_sender["snoozed-1"], {"status": "snoozed"}, actor_id=None)
    conversations_tx.update_conversation(conn, by_sender["old-resolved"], {"status": "resolved"}, actor_id=None)
    conn.execute(  # resolved long ago: the next message opens a new conversation
        sa.update(conversations)
        .where(conversations.c.id == by_sender["old-resolved"])
        .values(resolved_at=sa.func.datetime("now", "-30 days"))
    )
    conversations_tx.update_conversation(conn, by_sender["known-2"], {"handler": "human"}, actor_id=None)


BATCH = [
    msg("known-1", "first of a run", "b-1"),
    msg("known-2", "human-handled, so no bot job", "b-2"),
    msg("known-1", "same sender, same run", "b-3"),
    msg("known-1", "a provider retry inside the run", "b-1"),
    msg("new-1", "a first contact", "b-4", sender_name="Nia"),
    msg("new-1", "the new contact again: its fresh conversation", "b-5"),
    msg("known-1", "a provider retry after the run", "b-3"),
    msg("known-2", "a retry of a message stored before the run", "seed-known-2"),
    msg("resolved-1", "reopens its conversation", "b-6"),
    msg("pending-1", "pending becomes open", "b-7"),
    msg("snoozed-1", "snoozed becomes open", None),
    msg("old-resolved", "a new conversation", "b-8"),
    msg("known-1", "threaded", "b-9", thread_key="thread-1"),
    msg("known-2", "with contact hints", "b-10", contact_hints={"name": "Kay"}),
    msg("known-1", "no external id", None),
    msg("known-1", "no external id either", None),
    msg("new-2", "another first contact", "b-11"),
    msg("known-2", "after the slow ones", "b-12"),
]


def outcome(result: ingest_tx.Ingested) -> tuple[Any, ...]:
    m, c = result.message, result.conversation
    return (
        m.id,
        m.conversation_id,
        m.contact_id,
        m.body,
        m.external_id,
        m.kind,
        m.direction,
        m.author_kind,
        m.delivery_status,
        m.attachments,
        m.meta,
        c.id,
        c.contact_id,
        c.status,
        c.handler,
        c.priority,
        c.resolved_at is None,
        result.duplicate,
        result.new_conversation,
        tuple(result.merged_contact_ids),
    )


def dump(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every table ingest writes, without the timestamps."""

    def rows_of(table: sa.Table, *skip: str) -> list[tuple[Any, ...]]:
        columns = [c for c in table.c if c.key not in skip]
        return [tuple(r) for r in conn.execute(sa.select(*columns).order_by(table.c.id))]

    stamps = ("created_at", "updated_at", "last_message_at", "resolved_at", "next_attempt_at")
    return {
        "messages": rows_of(messages, *stamps),
        "conversations": rows_of(conversations, *stamps),
        "contacts": rows_of(contacts, *stamps),
        "identities": rows_of(identities, *stamps),
        "bot_jobs": rows_of(bot_jobs, *stamps),
    }


def fresh_db(path: Path) -> SQLiteDatabase:
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    return SQLiteDatabase(url)


def test_batch_form_stores_what_one_at_a_time_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one_by_one, batched = fresh_db(tmp_path / "a.db"), fresh_db(tmp_path / "b.db")
    stored_by_runs: list[int] = []
    store_run = ingest_tx._store_run

    def counting_store_run(conn: Any, run: Any, enqueue_bot: bool) -> Any:
        stored_by_runs.append(len(run))
        return store_run(conn, run, enqueue_bot)

    monkeypatch.setattr(ingest_tx, "_store_run", counting_store_run)
    try:
        with one_by_one._write_engine.begin() as conn:
            seed(conn)
            expected = [outcome(ingest_tx.ingest(conn, m, **OPTIONS)) for m in BATCH]
            expected_tables = dump(conn)
        with batched._write_engine.begin() as conn:
            seed(conn)
        with batched._write_engine.begin() as conn:
            got = [outcome(r) for r in ingest_tx.ingest_many(conn, BATCH, **OPTIONS)]
            got_tables = dump(conn)
    finally:
        asyncio.run(one_by_one.close())
        asyncio.run(batched.close())

    assert got == expected
    assert got_tables == expected_tables
    # The runs really carried messages (the check above is not just ``ingest`` again).
    assert sum(stored_by_runs) >= 8, stored_by_runs
    # The retries came back as the stored messages, in order.
    duplicates = [o for o in got if o[-3]]
    assert [o[4] for o in duplicates] == ["b-1", "b-3", "seed-known-2"]


@pytest.mark.asyncio
async def test_writer_hands_queued_ingests_to_the_batch_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = fresh_db(tmp_path / "hub.db")
    sizes: list[int] = []
    many = ingest_tx.ingest.__batch_form__  # type: ignore[attr-defined]

    def spy(conn: Any, batch: Any, **kwargs: Any) -> Any:
        sizes.append(len(batch))
        return many(conn, batch, **kwargs)

    monkeypatch.setattr(ingest_tx.ingest, "__batch_form__", spy)
    try:
        first = await db.write(ingest_tx.ingest, msg("warm", "hello", "w-1"), **OPTIONS)
        # Hold the writer so the next writes queue up behind it.
        blocker = asyncio.ensure_future(db.write(lambda conn: time.sleep(0.3)))
        await asyncio.sleep(0.05)
        inbound = [msg(f"sender-{i % 5}" if i % 7 else "warm", f"message {i}", f"m-{i}") for i in range(40)]
        inbound.append(msg("warm", "a retry in the same batch", "m-3"))
        results = await asyncio.gather(*(db.write(ingest_tx.ingest, m, **OPTIONS) for m in inbound))
        await blocker
        stored = await db.read(
            lambda conn: conn.execute(sa.select(messages.c.external_id, messages.c.body).order_by(messages.c.id)).all()
        )
    finally:
        await db.close()

    assert sizes and max(sizes) > 1
    assert [r.message.body for r in results[:40]] == [f"message {i}" for i in range(40)]
    assert results[40].duplicate and results[40].message.id == results[3].message.id
    assert len({r.message.id for r in results}) == 40
    # In arrival order, each delivery once.
    assert [e for e, _ in stored] == ["w-1"] + [f"m-{i}" for i in range(40)]
    warm = [r for m, r in zip(inbound, results) if m.sender == "warm" and not r.duplicate]
    assert {r.conversation.id for r in warm} == {first.conversation.id}


@pytest.mark.asyncio
async def test_a_failing_message_in_a_batch_spoils_nothing_else(tmp_path: Path) -> None:
    db = fresh_db(tmp_path / "hub.db")
    try:
        await db.write(ingest_tx.ingest, msg("known", "hello", "k-0"), **OPTIONS)
        blocker = asyncio.ensure_future(db.write(lambda conn: time.sleep(0.3)))
        await asyncio.sleep(0.05)
        inbound = [msg("known", "one", "k-1"), msg("   ", "no sender", "k-2"), msg("known", "two", "k-3")]
        results = await asyncio.gather(
            *(db.write(ingest_tx.ingest, m, **OPTIONS) for m in inbound), return_exceptions=True
        )
        await blocker
        stored = await db.read(
            lambda conn: conn.execute(sa.select(messages.c.external_id).order_by(messages.c.id)).scalars().all()
        )
    finally:
        await db.close()

    assert isinstance(results[1], InvalidInput)
    assert [r.message.body for r in (results[0], results[2])] == ["one", "two"]
    assert stored == ["k-0", "k-1", "k-3"]
