"""The inbox's queries on every backend: views, filters, search (hostile
strings included), keyset pages across ties, SLA states, contact labels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub import auth
from hub.console.inbox import (
    PAGE_SIZE,
    Cursor,
    Filters,
    InboxPage,
    SlaPolicy,
    View,
    contact_label,
    inbox_page,
    inbox_rows,
    mask_phone,
)
from hub.conversations import search
from hub.conversations.search import search_conversations
from hub.errors import InvalidInput
from hub.models import ConversationStatus, Priority
from hub.storage import Database, open_database
from hub.storage.schema import contacts, conversations, identities, messages, tickets
from hub.tickets.sla import parse_policies

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SLA = SlaPolicy(parse_policies("urgent=15/240,high=60/480,normal=240/1440,low=480/2880"))


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    try:
        yield database
    finally:
        await database.close()


def add_conversation(
    conn: Connection,
    *,
    at: datetime,
    texts: tuple[str, ...] = ("hello",),
    channel: str = "webchat",
    status: str = "open",
    priority: str = "normal",
    handler: str = "bot",
    assignee_id: int | None = None,
    name: str | None = "Customer",
    address: tuple[str, str] | None = None,
) -> int:
    contact_id = conn.execute(
        sa.insert(contacts)
        .values(name=name, attributes={}, tags=[], created_at=at, updated_at=at)
        .returning(contacts.c.id)
    ).scalar_one()
    if address is not None:
        conn.execute(
            sa.insert(identities).values(contact_id=contact_id, channel=address[0], address=address[1], created_at=at)
        )
    conversation_id = conn.execute(
        sa.insert(conversations)
        .values(
            contact_id=contact_id,
            channel=channel,
            status=status,
            priority=priority,
            handler=handler,
            assignee_id=assignee_id,
            created_at=at - timedelta(minutes=len(texts)),
            updated_at=at,
            last_message_at=at if texts else None,
            resolved_at=at if status == "resolved" else None,
        )
        .returning(conversations.c.id)
    ).scalar_one()
    for i, text in enumerate(texts):
        conn.execute(
            sa.insert(messages).values(
                conversation_id=conversation_id,
                contact_id=contact_id,
                channel=channel,
                direction="inbound" if i % 2 == 0 else "outbound",
                kind="message",
                author_kind="customer" if i % 2 == 0 else "agent",
                body=text,
                attachments=[],
                delivery_status="received",
                meta={},
                created_at=at - timedelta(minutes=len(texts) - 1 - i),
            )
        )
    return int(conversation_id)


def add_ticket(conn: Connection, conversation_id: int, *, team: str = "support", **values: Any) -> int:
    row = conn.execute(sa.select(conversations).where(conversations.c.id == conversation_id)).one()
    status = values.pop("status", "open")
    created = values.pop("created_at", NOW - timedelta(minutes=30))
    return int(
        conn.execute(
            sa.insert(tickets)
            .values(
                conversation_id=conversation_id,
                contact_id=row.contact_id,
                open_conversation_id=conversation_id if status == "open" else None,
                status=status,
                priority=row.priority,
                assignee_id=row.assignee_id,
                team=team,
                source="bot",
                reason="",
                summary="",
                kb_hits=[],
                created_at=created,
                updated_at=created,
                sla_paused_seconds=0.0,
                escalations=0,
                **values,
            )
            .returning(tickets.c.id)
        ).scalar_one()
    )


async def page(
    db: Database, filters: Filters, *, user_id: int = 1, after: Cursor | None = None, limit: int = PAGE_SIZE
) -> InboxPage:
    return await db.read(inbox_page, filters, user_id=user_id, now=NOW, sla=SLA, after=after, limit=limit)


async def ids(db: Database, filters: Filters, **kwargs: Any) -> list[int]:
    return [row.conversation_id for row in (await page(db, filters, **kwargs)).rows]


@pytest.mark.asyncio
async def test_views_and_filters(db: Database) -> None:
    agent = await db.write(lambda c: auth.create_user(c, name="Ann Agent", email="ann@example.test", role="agent"))
    other = await db.write(lambda c: auth.create_user(c, name="Bob Agent", email="bob@example.test", role="agent"))

    def seed(conn: Connection) -> dict[str, int]:
        made = {
            "mine": add_conversation(conn, at=NOW - timedelta(minutes=1), handler="human", assignee_id=agent.id),
            "theirs": add_conversation(conn, at=NOW - timedelta(minutes=2), handler="human", assignee_id=other.id),
            "queued": add_conversation(conn, at=NOW - timedelta(minutes=3), handler="human", channel="sms"),
            "bot": add_conversation(conn, at=NOW - timedelta(minutes=4)),
            "urgent": add_conversation(
                conn, at=NOW - timedelta(minutes=5), priority="urgent", handler="human", channel="email"
            ),
            "pending": add_conversation(conn, at=NOW - timedelta(minutes=6), status="pending", assignee_id=agent.id),
            "done": add_conversation(conn, at=NOW - timedelta(minutes=7), status="resolved", assignee_id=agent.id),
            "done_urgent": add_conversation(conn, at=NOW - timedelta(minutes=8), status="resolved", priority="urgent"),
        }
        add_ticket(conn, made["queued"], team="billing")
        add_ticket(conn, made["urgent"], team="support")
        add_ticket(conn, made["done"], team="billing", status="resolved")
        return made

    made = await db.write(seed)
    order = list(made.values())

    def expect(*names: str) -> list[int]:
        return sorted((made[n] for n in names), key=order.index)

    assert await ids(db, Filters(view=View.MINE), user_id=agent.id) == expect("mine", "pending")
    assert await ids(db, Filters(view=View.MINE), user_id=other.id) == expect("theirs")
    assert await ids(db, Filters(view=View.UNASSIGNED)) == expect("queued", "urgent")
    assert await ids(db, Filters(view=View.URGENT)) == expect("urgent")
    assert await ids(db, Filters(view=View.OPEN)) == expect("mine", "theirs", "queued", "bot", "urgent", "pending")
    assert await ids(db, Filters(view=View.RESOLVED)) == expect("done", "done_urgent")
    # Filters narrow a view.
    assert await ids(db, Filters(view=View.OPEN, channel="sms")) == expect("queued")
    assert await ids(db, Filters(view=View.OPEN, channel="whatsapp")) == []
    assert await ids(db, Filters(view=View.OPEN, priority=Priority.URGENT)) == expect("urgent")
    assert await ids(db, Filters(view=View.RESOLVED, priority=Priority.URGENT)) == expect("done_urgent")
    assert await ids(db, Filters(view=View.OPEN, status=ConversationStatus.PENDING)) == expect("pending")
    assert await ids(db, Filters(view=View.OPEN, team="billing")) == expect("queued")
    assert await ids(db, Filters(view=View.RESOLVED, team="billing")) == expect("done")
    assert await ids(db, Filters(view=View.MINE, status=ConversationStatus.OPEN), user_id=agent.id) == expect("mine")

    rows = {row.conversation_id: row for row in (await page(db, Filters(view=View.OPEN))).rows}
    mine = rows[made["mine"]]
    assert (mine.assignee, mine.assignee_id, mine.channel, mine.priority) == (
        "Ann Agent",
        agent.id,
        "webchat",
        "normal",
    )
    assert mine.last_message is not None and mine.last_message.text == "hello"
    assert mine.last_message.direction == "inbound" and mine.team is None
    assert rows[made["queued"]].team == "billing"

    # A live refresh re-reads given rows under the view: one that left it is not returned.
    again = await db.read(
        inbox_rows,
        [made["mine"], made["done"], made["queued"]],
        Filters(view=View.OPEN),
        user_id=agent.id,
        now=NOW,
        sla=SLA,
    )
    assert [r.conversation_id for r in again] == expect("mine", "queued")


@pytest.mark.asyncio
async def test_keyset_pages_cover_every_row_once_across_ties(db: Database) -> None:
    tie = NOW - timedelta(hours=1)

    def seed(conn: Connection) -> list[int]:
        made = [add_conversation(conn, at=tie) for _ in range(7)]  # seven with the same activity
        made += [add_conversation(conn, at=NOW - timedelta(minutes=i)) for i in range(1, 4)]
        made.append(add_conversation(conn, at=tie, texts=()))  # no message: its opening counts
        return made

    made = await db.write(seed)
    seen: list[int] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        result = await page(db, Filters(view=View.OPEN), after=cursor, limit=3)
        seen += [row.conversation_id for row in result.rows]
        pages += 1
        if result.next_cursor is None:
            break
        cursor = Cursor.decode(result.next_cursor.encode())  # through its text form, as a URL carries it
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    assert pages == 4
    newest = made[7:10]
    assert seen[:3] == newest
    assert seen[3:] == sorted((i for i in made if i not in newest), reverse=True)  # ties: by id
    # A conversation arriving while someone pages does not shift rows onto two pages.
    first = await page(db, Filters(view=View.OPEN), limit=3)
    await db.write(lambda c: add_conversation(c, at=NOW))
    second = await page(db, Filters(view=View.OPEN), after=first.next_cursor, limit=3)
    assert not {r.conversation_id for r in first.rows} & {r.conversation_id for r in second.rows}


HOSTILE = [
    '"',
    '""',
    "AND OR (",
    "NOT",
    "NEAR(a b",
    "*",
    "a*",
    "'",
    "':*",
    "!&|:*()",
    "-walnut",
    "^walnut",
    "walnut:",
    "col:walnut",
    "\\",
    "%_",
    "\x00",
    "😀 🎉",
    "a " * 500,
    "x" * 10_000,
    "  ",
    "",
]


@pytest.mark.asyncio
async def test_search_finds_words_and_survives_hostile_queries(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:

    def seed(conn: Connection) -> dict[str, int]:
        return {
            "clock": add_conversation(
                conn, at=NOW - timedelta(minutes=5), texts=("My Walnut clock arrived broken", "sorry!")
            ),
            "later": add_conversation(conn, at=NOW - timedelta(minutes=1), texts=("the walnut table is fine",)),
            "cafe": add_conversation(conn, at=NOW - timedelta(minutes=3), texts=("Ich möchte über das Café reden",)),
            "other": add_conversation(conn, at=NOW - timedelta(minutes=2), texts=("nothing to see in der Straße",)),
            "resolved": add_conversation(
                conn, at=NOW - timedelta(minutes=4), texts=("walnut again",), status="resolved"
            ),
        }

    made = await db.write(seed)
    # Newest first; case folded; every word in one message; the last word as a prefix.
    assert await db.read(search_conversations, "walnut") == [made["later"], made["resolved"], made["clock"]]
    assert await db.read(search_conversations, "WALNUT CLOCK") == [made["clock"]]
    assert await db.read(search_conversations, "walnut cl") == []  # too short a prefix to expand
    assert await db.read(search_conversations, "walnut clo") == [made["clock"]]
    assert await db.read(search_conversations, "walnut sorry") == []  # two messages, not one
    assert await db.read(search_conversations, "möchte") == [made["cafe"]]
    assert await db.read(search_conversations, "STRASSE") == []  # lower-cased, not case-folded (ß stays ß)
    assert await db.read(search_conversations, "Straße") == [made["other"]]
    assert await db.read(search_conversations, "clock, broken!") == [made["clock"]]
    # The inbox's search is the same, within the view.
    assert await ids(db, Filters(view=View.OPEN, search="walnut")) == [made["later"], made["clock"]]
    assert await ids(db, Filters(view=View.RESOLVED, search="walnut")) == [made["resolved"]]
    for text in HOSTILE:
        found = await db.read(search_conversations, text)
        assert set(found) <= set(made.values()), text
        await ids(db, Filters(view=View.OPEN, search=text))
    assert await db.read(search_conversations, '"walnut" (clock)') == [made["clock"]]
    # Operators are words like any other: no message holds "and" or "or" here.
    assert await db.read(search_conversations, "walnut AND clock") == []
    assert await db.read(search_conversations, "walnut OR nothing") == []
    # Only the most recent matching messages are looked at.
    monkeypatch.setattr(search, "MATCH_LIMIT", 2)
    assert await db.read(search_conversations, "walnut") == [made["later"], made["resolved"]]


@pytest.mark.asyncio
async def test_sla_states_match_the_ticket(db: Database) -> None:
    def seed(conn: Connection) -> dict[str, int]:
        made = {}
        for name, minutes in (("ok", 1), ("close", 2), ("late", 3), ("recorded", 4), ("paused", 5), ("answered", 6)):
            made[name] = add_conversation(conn, at=NOW - timedelta(minutes=minutes), handler="human", priority="urgent")
        created = NOW - timedelta(minutes=10)
        # Urgent: 15 minutes to a first response, 240 to resolve.
        add_ticket(
            conn, made["ok"], created_at=NOW - timedelta(minutes=5), first_response_due=NOW + timedelta(minutes=10)
        )
        add_ticket(conn, made["close"], created_at=created, first_response_due=NOW + timedelta(minutes=3))
        add_ticket(conn, made["late"], created_at=created, first_response_due=NOW - timedelta(seconds=1))
        add_ticket(
            conn,
            made["recorded"],
            created_at=created,
            first_response_due=NOW + timedelta(minutes=10),
            first_response_breached_at=NOW,
        )
        add_ticket(
            conn,
            made["paused"],
            created_at=created,
            first_response_due=NOW + timedelta(minutes=1),
            sla_paused_at=NOW - timedelta(minutes=9),
        )
        add_ticket(
            conn,
            made["answered"],
            created_at=created,
            first_response_due=NOW - timedelta(minutes=5),
            first_response_at=NOW - timedelta(minutes=8),
            resolution_due=NOW + timedelta(minutes=200),
        )
        return made

    made = await db.write(seed)
    rows = {row.conversation_id: row for row in (await page(db, Filters(view=View.URGENT))).rows}
    state = {name: rows[i].sla for name, i in made.items()}
    assert all(s is not None for s in state.values())
    assert state["ok"].state == "ok" and state["ok"].left == timedelta(minutes=10)  # type: ignore[union-attr]
    assert state["close"].state == "close"  # type: ignore[union-attr]  # 3 of 15 minutes: 20 %
    assert state["late"].state == "breached" and state["late"].left < timedelta(0)  # type: ignore[union-attr]
    assert state["recorded"].state == "breached"  # type: ignore[union-attr]
    paused = state["paused"]
    assert paused is not None and paused.paused and paused.left == timedelta(minutes=10) and paused.state == "ok"
    answered = state["answered"]
    assert answered is not None and answered.target == "resolution" and answered.state == "ok"


def test_contact_labels_mask_addresses() -> None:
    assert contact_label(7, "Ada Lovelace", [("email", "ada@example.com")]) == "Ada Lovelace"
    assert contact_label(7, None, [("webchat", "v-1"), ("email", "ada@example.com")]) == "a***@example.com"
    assert contact_label(7, "  ", [("phone", "+447700900123")]) == "+44••••••••23"
    assert contact_label(7, None, [("webchat", "v-1")]) == "Web visitor #7"
    assert contact_label(7, None, []) == "Contact #7"
    assert mask_phone("+1555") == "•••••"


def test_cursors_round_trip_and_refuse_forgeries() -> None:
    cursor = Cursor(NOW, 42)
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "!!!", "bm90LWEtY3Vyc29y", Cursor(NOW, 1).encode() + "A" * 300, "MjAyNi0xMS0yOVQxMjowMDowMHwwMQ"):
        with pytest.raises(InvalidInput):
            Cursor.decode(bad)
