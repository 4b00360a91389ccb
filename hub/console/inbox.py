"""The console's inbox: which conversations a view shows, a page at a time.

Views (``View``): *mine* (assigned to me), *unassigned* (handed to people,
nobody has it), *urgent*, *open* (everything not resolved) and *resolved*;
filters by channel, priority, team and status, and a full-text search
(``hub.conversations.search``). Rows are ordered by last activity (the last
message, else the opening), newest first, then by id: pages are cut with a
keyset cursor on that pair (never OFFSET), so page 200 costs what page 1
does and a conversation arriving meanwhile never shifts a row onto two
pages. Migration 0010 has the partial indexes each view scans in order.

A page is read in ONE transaction with a fixed number of statements (the
conversations, then the contacts, identities, last messages, tickets and
assignees of all of them at once), whatever its size.

What a row shows matches the Slack card of the same ticket: the SLA due is
``Ticket.sla_due`` (the first response until there is one, then the
resolution), breached when the scheduler recorded a breach or the due time
has passed; *close* when at most 20 % of the target is left.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.bot.promise import mask_email
from hub.config import Settings
from hub.conversations.search import conversation_matches, last_activity
from hub.errors import InvalidInput
from hub.models import ConversationStatus, Handler, MessageKind, Priority, StrEnum
from hub.storage.schema import agent_profiles, contacts, conversations, identities, messages, tickets, users
from hub.tickets.sla import BusinessHours, Policy, parse_policies

PAGE_SIZE = 50
PREVIEW_CHARS = 160
CLOSE_SHARE = 0.2  # SLA "close" at or under this share of the target left (without warnings)


class View(StrEnum):
    MINE = "mine"
    UNASSIGNED = "unassigned"
    URGENT = "urgent"
    OPEN = "open"
    RESOLVED = "resolved"

    @property
    def label(self) -> str:
        return _VIEW_LABELS[self]


_VIEW_LABELS = {
    View.MINE: "Mine",
    View.UNASSIGNED: "Unassigned",
    View.URGENT: "Urgent",
    View.OPEN: "All open",
    View.RESOLVED: "Resolved",
}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the row with this activity and id."""

    activity: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.activity.astimezone(UTC).isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            if len(text) > 200:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            stamp, _, ident = raw.partition("|")
            activity = datetime.fromisoformat(stamp)
            if activity.tzinfo is None or not re.fullmatch(r"[1-9][0-9]{0,18}", ident):
                raise ValueError("malformed")
            return cls(activity=activity.astimezone(UTC), id=int(ident))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidInput("cursor: not a cursor this inbox gave out") from None


@dataclass(frozen=True, slots=True)
class Filters:
    """A view with its filters: all of it fits in a URL's query string."""

    view: View = View.OPEN
    channel: str | None = None
    priority: Priority | None = None
    team: str | None = None
    status: ConversationStatus | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class Preview:
    text: str
    direction: str  # inbound | outbound
    author_kind: str  # customer | bot | agent
    at: datetime


@dataclass(frozen=True, slots=True)
class Sla:
    due: datetime
    target: str  # first_response | resolution
    state: str  # breached | close | ok
    left: timedelta  # negative once breached
    paused: bool


@dataclass(frozen=True, slots=True)
class InboxRow:
    conversation_id: int
    contact_id: int
    contact: str  # the contact's name, or a masked address
    channel: str
    status: str
    priority: str
    handler: str
    subject: str | None
    activity: datetime
    assignee_id: int | None
    assignee: str | None
    team: str | None
    last_message: Preview | None
    sla: Sla | None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.activity, self.conversation_id)


@dataclass(frozen=True, slots=True)
class InboxPage:
    rows: list[InboxRow]
    next_cursor: Cursor | None
    filters: Filters = field(default_factory=Filters)


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The SLA targets and calendar the ticket service runs on."""

    policies: dict[Priority, Policy]
    hours: BusinessHours | None = None
    # "close" (amber) at or under this share of the target left: where the
    # SLA warning goes out (1 - HUB_SLA_WARN_AT), so the console turns amber
    # as the assignee's Slack notice arrives.
    close_share: float = CLOSE_SHARE


def sla_policy(settings: Settings) -> SlaPolicy:
    """The SLA targets, calendar and warning share the ticket service runs on."""
    warn_at = settings.sla_warn_at
    return SlaPolicy(
        policies=parse_policies(settings.sla_policies),
        hours=BusinessHours.parse(settings.sla_business_hours, settings.sla_timezone, settings.sla_holidays),
        close_share=1.0 - warn_at if 0.0 < warn_at < 1.0 else CLOSE_SHARE,
    )


_NOT_RESOLVED = conversations.c.status != sa.literal_column("'resolved'")


def _where(conn: Connection, filters: Filters, user_id: int) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    view = filters.view
    if view == View.RESOLVED:
        where.append(conversations.c.status == ConversationStatus.RESOLVED.value)
    else:
        # The literal term the partial indexes of migration 0010 are on.
        where.append(_NOT_RESOLVED)
    if view == View.MINE:
        where.append(conversations.c.assignee_id == user_id)
    elif view == View.UNASSIGNED:
        where += [conversations.c.assignee_id.is_(None), conversations.c.handler == Handler.HUMAN.value]
    elif view == View.URGENT:
        where.append(conversations.c.priority == Priority.URGENT.value)
    if filters.channel:
        where.append(conversations.c.channel == filters.channel)
    if filters.priority:
        where.append(conversations.c.priority == filters.priority.value)
    if filters.status:
        where.append(conversations.c.status == filters.status.value)
    if filters.team:
        where.append(sa.exists().where(tickets.c.conversation_id == conversations.c.id, tickets.c.team == filters.team))
    if filters.search:
        found = conversation_matches(conn, filters.search)
        where.append(found if found is not None else sa.false())
    return where


def inbox_page(
    conn: Connection,
    filters: Filters,
    *,
    user_id: int,
    now: datetime,
    sla: SlaPolicy,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> InboxPage:
    """The ``limit`` most recently active conversations of ``filters`` after
    ``after`` (from the top without one), and the cursor of the next page."""
    activity = last_activity()
    stmt = (
        sa.select(*conversations.c, activity.label("activity"))
        .where(*_where(conn, filters, user_id))
        .order_by(activity.desc(), conversations.c.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        # (activity, id) < (cursor): written so the activity bound is a plain
        # range on the index's first ordered column (SQLite does not seek
        # an expression index with a row value), ties settled by id.
        at = sa.literal(after.activity, conversations.c.created_at.type)
        stmt = stmt.where(activity <= at, sa.or_(activity < at, conversations.c.id < after.id))
    found = conn.execute(stmt).all()
    more = len(found) > limit
    rows = _rows(conn, found[:limit], now=now, sla=sla)
    return InboxPage(rows=rows, next_cursor=rows[-1].cursor if more and rows else None, filters=filters)


def inbox_rows(
    conn: Connection, ids: Sequence[int], filters: Filters, *, user_id: int, now: datetime, sla: SlaPolicy
) -> list[InboxRow]:
    """The rows among ``ids`` that ``filters`` shows now, newest first: what
    a live inbox re-reads when the bus says they changed."""
    if not ids:
        return []
    activity = last_activity()
    stmt = (
        sa.select(*conversations.c, activity.label("activity"))
        .where(conversations.c.id.in_(list(ids)), *_where(conn, filters, user_id))
        .order_by(activity.desc(), conversations.c.id.desc())
    )
    return _rows(conn, conn.execute(stmt).all(), now=now, sla=sla)


def teams(conn: Connection, default_team: str) -> list[str]:
    """The teams an inbox can filter on: the agents' and the default one."""
    found = set(conn.execute(sa.select(agent_profiles.c.team).distinct()).scalars())
    return sorted(found | {default_team})


def _rows(conn: Connection, found: Sequence[Any], *, now: datetime, sla: SlaPolicy) -> list[InboxRow]:
    if not found:
        return []
    ids = [r.id for r in found]
    contact_ids = sorted({r.contact_id for r in found})
    names = dict(conn.execute(sa.select(contacts.c.id, contacts.c.name).where(contacts.c.id.in_(contact_ids))).all())
    addresses: dict[int, list[tuple[str, str]]] = {}
    for row in conn.execute(
        sa.select(identities.c.contact_id, identities.c.channel, identities.c.address)
        .where(identities.c.contact_id.in_(contact_ids))
        .order_by(identities.c.id)
    ):
        addresses.setdefault(row.contact_id, []).append((row.channel, row.address))
    latest = (
        sa.select(sa.func.max(messages.c.id))
        .where(messages.c.conversation_id.in_(ids), messages.c.kind == MessageKind.MESSAGE.value)
        .group_by(messages.c.conversation_id)
    )
    previews = {
        row.conversation_id: Preview(
            text=_clip(row.body), direction=row.direction, author_kind=row.author_kind, at=row.created_at
        )
        for row in conn.execute(
            sa.select(
                messages.c.conversation_id,
                messages.c.body,
                messages.c.direction,
                messages.c.author_kind,
                messages.c.created_at,
            ).where(messages.c.id.in_(latest))
        )
    }
    last_ticket = (
        sa.select(sa.func.max(tickets.c.id))
        .where(tickets.c.conversation_id.in_(ids))
        .group_by(tickets.c.conversation_id)
    )
    ticket_of = {
        row.conversation_id: row for row in conn.execute(sa.select(tickets).where(tickets.c.id.in_(last_ticket)))
    }
    assignee_ids = sorted({r.assignee_id for r in found if r.assignee_id is not None})
    people = (
        dict(conn.execute(sa.select(users.c.id, users.c.name).where(users.c.id.in_(assignee_ids))).all())
        if assignee_ids
        else {}
    )
    result = []
    for row in found:
        ticket = ticket_of.get(row.id)
        result.append(
            InboxRow(
                conversation_id=row.id,
                contact_id=row.contact_id,
                contact=contact_label(row.contact_id, names.get(row.contact_id), addresses.get(row.contact_id, [])),
                channel=row.channel,
                status=row.status,
                priority=row.priority,
                handler=row.handler,
                subject=row.subject,
                activity=_utc(row.activity),
                assignee_id=row.assignee_id,
                assignee=people.get(row.assignee_id) if row.assignee_id is not None else None,
                team=ticket.team if ticket is not None else None,
                last_message=previews.get(row.id),
                sla=sla_of(ticket, now, sla) if ticket is not None else None,
            )
        )
    return result


def _utc(value: Any) -> datetime:
    # COALESCE comes back through the column type on PostgreSQL; SQLite may
    # hand the stored text back when the expression's type is lost.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def sla_of(ticket: Any, now: datetime, sla: SlaPolicy) -> Sla | None:
    """The SLA state of a ticket row (None: resolved, or no SLA for its priority)."""
    if ticket.status != "open":
        return None
    if ticket.first_response_at is None and ticket.first_response_due is not None:
        due, target, breached = ticket.first_response_due, "first_response", ticket.first_response_breached_at
    elif ticket.resolution_due is not None:
        due, target, breached = ticket.resolution_due, "resolution", ticket.resolution_breached_at
    else:
        return None
    paused = ticket.sla_paused_at is not None
    # While the customer is awaited the clock stands still at the pause.
    at = ticket.sla_paused_at if paused else now
    if sla.hours is not None:
        seconds = sla.hours.between(at, due) if due > at else -(at - due).total_seconds()
    else:
        seconds = (due - at).total_seconds()
    left = timedelta(seconds=seconds)
    policy = sla.policies.get(Priority(ticket.priority))
    total = (
        (policy.first_response if target == "first_response" else policy.resolution)
        if policy is not None
        else due - ticket.created_at
    )
    if breached is not None or seconds <= 0:
        state = "breached"
    elif seconds <= sla.close_share * total.total_seconds():
        state = "close"
    else:
        state = "ok"
    return Sla(due=due, target=target, state=state, left=left, paused=paused)


def contact_label(contact_id: int, name: str | None, addresses: list[tuple[str, str]]) -> str:
    """The contact's name; without one, their e-mail or phone masked (the
    inbox is read by viewers too, and over shoulders), else who they are by
    channel."""
    if name and name.strip():
        return name.strip()
    kinds = dict(reversed(addresses))  # the first address of each kind
    if "email" in kinds:
        return mask_email(kinds["email"])
    if "phone" in kinds:
        return mask_phone(kinds["phone"])
    if "webchat" in kinds:
        return f"Web visitor #{contact_id}"
    return f"Contact #{contact_id}"


def mask_phone(number: str) -> str:
    """``+447700900123`` -> ``+44••••••••23``: the country and the last two digits."""
    digits = number.strip()
    if len(digits) <= 5:
        return "•" * len(digits)
    return digits[:3] + "•" * (len(digits) - 5) + digits[-2:]
