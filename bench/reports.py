"""Every report over 1,000,000 messages / 100,000 conversations, on SQLite and PostgreSQL.

    .venv/bin/python bench/reports.py [--quick] [--postgres URL | --no-postgres]

Seeds a fresh database of each kind (SQLite in a temporary directory; a new
database on the PostgreSQL server of ``--postgres``, default the local one,
dropped afterwards) with bulk inserts (SQLite ``executemany`` on the file,
PostgreSQL ``COPY``), not the ingest path: a year of conversations over four
channels, ten messages each (customers, the bot with its stored decisions,
agents, notes, timeline events), a ticket for a third of them (reopened
conversations get a second), SLA targets and breaches, and the audit rows
of claims and resolves. Then runs each report over the whole year in
Europe/Berlin by day through ``ReportService`` (best of two runs, warm) and
prints per-report seconds. ``--quick``: a tenth of the data (< 60 s).

Prints figures and one JSON object on the last line, with ``slowest_s``.
Target: every report < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import emit, postgres_database

START = datetime(2025, 12, 1, tzinfo=UTC)
DAYS = 365
CHANNELS = ("webchat", "webchat", "email", "sms", "whatsapp")
PRIORITIES = ("urgent", "high", "normal", "normal", "low")
REASONS = ("customer-request", "urgent-issue", "complaint", "kb-unavailable")
DECISIONS = ("answer", "answer", "answer", "clarify", "topics", "offer_human")
REPORTS = ("volume", "response-times", "sla", "bot", "agents")
AGENTS = 50

# Column lists in the order rows are generated.
COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "name", "email", "role", "extra", "created_at"),
    "agent_profiles": (
        "user_id",
        "team",
        "skills",
        "capacity",
        "senior",
        "on_duty",
        "open_tickets",
        "last_assigned_seq",
        "updated_at",
    ),
    "contacts": ("id", "name", "attributes", "tags", "created_at", "updated_at"),
    "conversations": (
        "id",
        "contact_id",
        "channel",
        "status",
        "priority",
        "handler",
        "assignee_id",
        "created_at",
        "updated_at",
        "last_message_at",
        "resolved_at",
    ),
    "messages": (
        "id",
        "conversation_id",
        "contact_id",
        "channel",
        "direction",
        "kind",
        "author_kind",
        "author_id",
        "body",
        "attachments",
        "delivery_status",
        "meta",
        "created_at",
    ),
    "tickets": (
        "id",
        "conversation_id",
        "contact_id",
        "open_conversation_id",
        "status",
        "priority",
        "assignee_id",
        "team",
        "source",
        "reason",
        "summary",
        "kb_hits",
        "created_at",
        "updated_at",
        "resolved_at",
        "first_response_at",
        "first_response_due",
        "resolution_due",
        "sla_paused_seconds",
        "first_response_breached_at",
        "resolution_breached_at",
        "escalations",
    ),
    "audit_log": ("id", "user_id", "action", "via", "target_type", "target_id", "details", "created_at"),
}


class Seed:
    """The generated rows, table by table (generated once, written to both backends)."""

    def __init__(self, conversations: int, rng: random.Random) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}
        self.messages = 0
        self.rng = rng
        self._message_id = 0
        self._at = START
        self._batch: list[tuple[Any, ...]] = []
        self._conversation: tuple[int, int, str] = (0, 0, "")
        now = START
        for agent in range(1, AGENTS + 1):
            self.rows["users"].append((agent, f"Agent {agent}", f"agent{agent}@bench.test", "agent", {}, now))
            self.rows["agent_profiles"].append((agent, f"team-{agent % 5}", [], 20, False, True, 0, 0, now))
        contacts = max(1, conversations // 2)
        for contact in range(1, contacts + 1):
            self.rows["contacts"].append((contact, f"Customer {contact}", {}, [], now, now))
        ticket_id = audit_id = 0
        # In time order, as a hub stores them: ids grow with created_at.
        openings = sorted(START + timedelta(seconds=rng.randrange(DAYS * 86400)) for _ in range(conversations))
        for conversation, opened in enumerate(openings, start=1):
            contact = rng.randrange(1, contacts + 1)
            channel = rng.choice(CHANNELS)
            self._conversation = (conversation, contact, channel)
            self._at = opened
            self._batch = []
            message = self._message

            handed = rng.random() < 0.33
            agent = rng.randrange(1, AGENTS + 1)
            message("inbound", "message", "customer", None, {})
            asked = self._message_id
            message(
                "outbound",
                "message",
                "bot",
                None,
                {"in_reply_to": asked, "decision": {"action": rng.choice(DECISIONS)}},
            )
            message("inbound", "message", "customer", None, {})
            cycles = (1 + (rng.random() < 0.1)) if handed else 0
            status, resolved_at = "open", None
            for cycle in range(cycles):
                asked = self._message_id
                message("outbound", "message", "bot", None, {"in_reply_to": asked, "decision": {"action": "handoff"}})
                ticket_id += 1
                ticket_opened = self._at
                message("internal", "event", "system", None, {"event": "ticket-opened", "ticket_id": ticket_id})
                audit_id += 1
                self.rows["audit_log"].append(
                    (audit_id, agent, "ticket.claim", "api", "ticket", str(ticket_id), {}, self._at)
                )
                message("outbound", "message", "agent", agent, {})
                first_response = self._at
                message("internal", "note", "agent", agent, {})
                message("inbound", "message", "customer", None, {})
                resolved = cycle < cycles - 1 or rng.random() < 0.9  # one open ticket per conversation
                message("outbound", "message", "agent", agent, {})
                priority = rng.choice(PRIORITIES)
                first_due = ticket_opened + timedelta(minutes=30)
                resolution_due = ticket_opened + timedelta(hours=4)
                resolved_at = self._at if resolved else None
                status = "resolved" if resolved else "open"
                if resolved:
                    audit_id += 1
                    self.rows["audit_log"].append(
                        (audit_id, agent, "ticket.resolve", "api", "ticket", str(ticket_id), {}, self._at)
                    )
                self.rows["tickets"].append(
                    (
                        ticket_id,
                        conversation,
                        contact,
                        None if resolved else conversation,
                        status,
                        priority,
                        agent,
                        f"team-{agent % 5}",
                        "bot",
                        rng.choice(REASONS),
                        "summary",
                        [],
                        ticket_opened,
                        self._at,
                        resolved_at,
                        first_response,
                        first_due,
                        resolution_due,
                        0.0,
                        first_due if first_response > first_due else None,
                        resolution_due if resolved_at and resolved_at > resolution_due else None,
                        0,
                    )
                )
            while len(self._batch) < 10:
                asked = self._message_id
                message("inbound", "message", "customer", None, {})
                if len(self._batch) < 10:
                    message(
                        "outbound", "message", "bot", None, {"in_reply_to": asked + 1, "decision": {"action": "answer"}}
                    )
            self.rows["messages"] += self._batch
            self.rows["conversations"].append(
                (
                    conversation,
                    contact,
                    channel,
                    status,
                    "normal",
                    "human" if handed and status == "open" else "bot",
                    agent if handed else None,
                    opened,
                    self._at,
                    self._at,
                    resolved_at,
                )
            )
        self.messages = self._message_id

    def _message(self, direction: str, kind: str, author: str, author_id: Any, meta: dict[str, Any]) -> None:
        """The conversation's next message, 20 s to 15 min after the one before."""
        conversation, contact, channel = self._conversation
        self._message_id += 1
        self._at += timedelta(seconds=self.rng.randrange(20, 900))
        status = "received" if direction == "inbound" else "sent" if direction == "outbound" else "none"
        self._batch.append(
            (
                self._message_id,
                conversation,
                contact,
                channel,
                direction,
                kind,
                author,
                author_id,
                "text",
                [],
                status,
                meta,
                self._at,
            )
        )


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _pg_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def write_sqlite(path: Path, seed: Seed) -> None:
    conn = sqlite3.connect(path)
    try:
        for table, columns in COLUMNS.items():
            marks = ", ".join("?" for _ in columns)
            rows: Iterator[tuple[Any, ...]] = (tuple(_sqlite_value(v) for v in row) for row in seed.rows[table])
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        conn.commit()
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def write_postgres(url: str, seed: Seed) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(url)
    conn = await asyncpg.connect(
        host=server.host,
        port=server.port or 5432,
        user=server.username,
        password=server.password,
        database=server.database,
    )
    try:
        for table, columns in COLUMNS.items():
            await conn.copy_records_to_table(
                table, records=[tuple(_pg_value(v) for v in row) for row in seed.rows[table]], columns=list(columns)
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run_reports(url: str) -> dict[str, float]:
    from hub.events import Clock
    from hub.reports.params import ReportParams
    from hub.reports.service import ReportService
    from hub.storage import open_database
    from hub.tickets.sla import BusinessHours

    db = open_database(url)
    hours = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Berlin")
    service = ReportService(db, hours=hours, clock=Clock())
    params = ReportParams.parse(
        start=START.isoformat(), end=(START + timedelta(days=DAYS)).isoformat(), tz="Europe/Berlin", bucket="day"
    )
    seconds: dict[str, float] = {}
    try:
        for name in REPORTS:
            best = float("inf")
            for _ in range(2):
                started = time.perf_counter()
                await service.run(name, params)
                best = min(best, time.perf_counter() - started)
            seconds[name] = round(best, 3)
    finally:
        await db.close()
    return seconds


async def bench(seed: Seed, postgres: str | None) -> dict[str, dict[str, float]]:
    from hub.storage.migrate import upgrade

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(upgrade, url)
        started = time.perf_counter()
        await asyncio.to_thread(write_sqlite, path, seed)
        print(f"sqlite: seeded in {time.perf_counter() - started:.1f} s", flush=True)
        results["sqlite"] = await run_reports(url)
        print(f"sqlite: {results['sqlite']}", flush=True)
    if postgres:
        url, drop = await postgres_database(postgres)
        try:
            await asyncio.to_thread(upgrade, url)
            started = time.perf_counter()
            await write_postgres(url, seed)
            print(f"postgresql: seeded in {time.perf_counter() - started:.1f} s", flush=True)
            results["postgresql"] = await run_reports(url)
            print(f"postgresql: {results['postgresql']}", flush=True)
        finally:
            await drop
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (< 60 s)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server's maintenance database; a temporary database is made there",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    conversations = 10_000 if args.quick else 100_000
    started = time.perf_counter()
    seed = Seed(conversations, random.Random(17))
    print(
        f"generated {conversations:,} conversations, {seed.messages:,} messages, {len(seed.rows['tickets']):,} tickets "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    results = asyncio.run(bench(seed, None if args.no_postgres else args.postgres))
    figures: dict[str, Any] = {
        "conversations": conversations,
        "messages": seed.messages,
        "tickets": len(seed.rows["tickets"]),
        "target_s": 1.0,
    }
    for backend, seconds in results.items():
        for name, value in seconds.items():
            figures[f"{backend}_{name.replace('-', '_')}_s"] = value
    figures["slowest_s"] = max(value for seconds in results.values() for value in seconds.values())
    figures["meets_target"] = figures["slowest_s"] < 1.0
    emit(figures)


if __name__ == "__main__":
    main()
