"""Resolve channel addresses to one contact; merge, export and erase contacts.

Addresses are normalised before they are stored or looked up: e-mail
lower-cased, phone numbers in E.164, channel-local ids stripped. Identity
kinds are ``email``, ``phone`` or a channel name (``webchat``, ``slack``...).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.audit import entry as audit_entry
from hub.conversations import references, search
from hub.conversations.references import contact_references, unhandled_contact_references
from hub.errors import InvalidInput, NotFound
from hub.events import utcnow
from hub.inputs import check_email, check_phone
from hub.models import (
    AuthorKind,
    Contact,
    DeliveryStatus,
    Direction,
    Identity,
    MessageKind,
)
from hub.reports import erased as erased_for_reports
from hub.storage import PerDialect, insert_ignore, rows
from hub.storage.schema import (
    audit_log,
    bot_jobs,
    contacts,
    conversations,
    csat_surveys,
    erased_deliveries,
    identities,
    kb_phrasing_suggestions,
    messages,
    metadata,
    slack_jobs,
    tickets,
)

__all__ = ["Erasure", "contact_references", "erase_contact", "merge_contacts", "unhandled_contact_references"]

EMAIL_MAX = 320
# A message that is an address and nothing else (a full stop or the
# customer's angle brackets aside): the answer to "what's your email?".
_TYPED_EMAIL = re.compile(r"<?([^\s@<>,;]+@[^\s@<>,;]+\.[^\s@<>,;.]+)>?\.?")


def normalise_address(kind: str, address: str, *, default_region: str | None = None) -> str:
    """Canonical form of ``address`` for identity ``kind``; InvalidInput when it is not one."""
    address = address.strip()
    if not address:
        raise InvalidInput(f"empty {kind} address")
    if kind == "email":
        return check_email(address)  # the hub's one e-mail check (users' addresses too)
    if kind == "phone":
        return check_phone(address, default_region=default_region)
    if len(address) > EMAIL_MAX:
        raise InvalidInput(f"{kind} address is too long")
    return address


_IDENTITIES_OF = (
    sa.select(identities).where(identities.c.contact_id == sa.bindparam("contact_id")).order_by(identities.c.id)
)
_CONTACT = sa.select(contacts).where(contacts.c.id == sa.bindparam("contact_id"))
_IDENTITY = sa.select(identities).where(
    identities.c.channel == sa.bindparam("kind"), identities.c.address == sa.bindparam("address")
)


# Built once with bound parameters (first contacts are on the ingest path): a
# statement with literal values gets a new cache key on every call.
_INSERT_CONTACT = (
    sa.insert(contacts)
    .values(
        name=sa.bindparam("name"),
        attributes=sa.bindparam("attributes"),
        tags=sa.bindparam("tags"),
        created_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
    .returning(contacts.c.id)
)
_INSERT_IDENTITY = PerDialect(
    lambda conn: (
        insert_ignore(conn, identities)
        .values(
            contact_id=sa.bindparam("contact_id"),
            channel=sa.bindparam("kind"),
            address=sa.bindparam("address"),
            created_at=sa.bindparam("now"),
        )
        .on_conflict_do_nothing()
        .returning(identities.c.id)
    )
)


def typed_email(text: str) -> str | None:
    """The e-mail address a customer's message consists of, normalised; None
    when the message is anything else (a sentence that mentions an address is
    not a contact detail)."""
    if "@" not in text or len(text) > EMAIL_MAX + 3:
        return None
    match = _TYPED_EMAIL.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return normalise_address("email", match.group(1))
    except InvalidInput:
        return None


def identities_of(conn: Connection, contact_id: int) -> list[Identity]:
    return [rows.identity(r) for r in conn.execute(_IDENTITIES_OF, {"contact_id": contact_id})]


def get_contact(conn: Connection, contact_id: int) -> Contact:
    row = conn.execute(_CONTACT, {"contact_id": contact_id}).first()
    if row is None:
        raise NotFound(f"contact {contact_id} does not exist")
    return rows.contact(row, identities_of(conn, contact_id))


def find_identity(conn: Connection, kind: str, address: str) -> Any:
    return conn.execute(_IDENTITY, {"kind": kind, "address": address}).first()


def create_contact(
    conn: Connection,
    *,
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    now: datetime | None = None,
) -> int:
    return conn.execute(
        _INSERT_CONTACT, {"name": name, "attributes": attributes or {}, "tags": tags or [], "now": now or utcnow()}
    ).scalar_one()


def hold_contact(conn: Connection, contact_id: int) -> Any:
    """The row of contact ``contact_id`` (None: gone), held FOR UPDATE until
    the transaction ends (PostgreSQL; SQLite has one writer).

    A merge or an erasure takes it *after* moving or deleting the contact's
    rows, then goes over them once more, and only then deletes the contact.
    A concurrent writer adding a row that names the contact holds it FOR KEY
    SHARE (the foreign key check): one that got there first has committed
    when the lock is granted, and its row is seen by the second pass; one
    that comes later waits, then fails its foreign key (23503) and runs
    again (``hub.storage.retry_vanished``), finding the surviving contact.
    Nothing is left for the cascade to delete unseen. Taken last, it keeps
    the hub's lock order (a conversation's row before its contact's), so a
    ticket change that holds the conversation and writes an event cannot
    deadlock with a merge.
    """
    stmt = sa.select(contacts).where(contacts.c.id == contact_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


def resolve_identity(
    conn: Connection, kind: str, address: str, *, name: str | None = None, now: datetime | None = None
) -> tuple[int, int, bool]:
    """``(contact_id, identity_id, created)`` for an already normalised address.

    Concurrent first messages from one new address race on the unique
    ``(channel, address)`` constraint; the loser adopts the winner's contact.
    """
    row = find_identity(conn, kind, address)
    if row is not None:
        return row.contact_id, row.id, False
    now = now or utcnow()
    contact_id = create_contact(conn, name=name, now=now)
    inserted = conn.execute(
        _INSERT_IDENTITY(conn),
        {"contact_id": contact_id, "kind": kind, "address": address, "now": now},
    ).scalar_one_or_none()
    if inserted is not None:
        return contact_id, inserted, True
    conn.execute(sa.delete(contacts).where(contacts.c.id == contact_id))
    row = find_identity(conn, kind, address)
    assert row is not None
    return row.contact_id, row.id, False


def add_identity(conn: Connection, contact_id: int, kind: str, address: str) -> int | None:
    """Attach an address to a contact; merges the contact that already had it.

    Returns the id of the contact merged away, if any.
    """
    row = find_identity(conn, kind, address)
    if row is None:
        conn.execute(
            sa.insert(identities).values(contact_id=contact_id, channel=kind, address=address, created_at=utcnow())
        )
        return None
    if row.contact_id == contact_id:
        return None
    # The address already belongs to someone: that is the same person. The
    # older contact survives so that links to it (exports, CRMs) keep working.
    source, target = sorted((row.contact_id, contact_id), reverse=True)
    merge_contacts(conn, source_id=source, target_id=target, reason=f"same {kind}")
    return source


def merge_contacts(
    conn: Connection, *, source_id: int, target_id: int, actor_id: int | None = None, reason: str = ""
) -> Contact:
    """Move everything of ``source`` to ``target`` and delete ``source``: one
    transaction, over every foreign key to contacts (``hub.conversations.references``).

    Messages keep their ids and timestamps, so the merged timeline stays in
    the order things happened. A system event on the target's latest
    conversation records the merge. A concurrent writer's rows for the
    source are moved too, or that writer runs again for the target
    (``hold_contact``); none is deleted with the source by the cascade.
    """
    if source_id == target_id:
        raise InvalidInput("cannot merge a contact into itself")
    source = conn.execute(sa.select(contacts).where(contacts.c.id == source_id)).first()
    target = conn.execute(sa.select(contacts).where(contacts.c.id == target_id)).first()
    if source is None or target is None:
        raise NotFound(f"contact {source_id if source is None else target_id} does not exist")
    now = utcnow()
    attributes = {**(source.attributes or {}), **(target.attributes or {})}
    tags = sorted({*(source.tags or []), *(target.tags or [])})
    # The later NPS question of the two (``hub.nps``): one person, asked at most once per period.
    asked = max((t for t in (source.nps_asked_at, target.nps_asked_at) if t is not None), default=None)
    conn.execute(
        sa.update(contacts)
        .where(contacts.c.id == target_id)
        .values(name=target.name or source.name, attributes=attributes, tags=tags, updated_at=now, nps_asked_at=asked)
    )
    move_contact_rows(conn, source_id, target_id)
    if hold_contact(conn, source_id) is None:
        raise NotFound(f"contact {source_id} does not exist")  # merged or erased meanwhile
    move_contact_rows(conn, source_id, target_id)  # what writers committed until then
    conn.execute(sa.delete(contacts).where(contacts.c.id == source_id))
    latest = conn.execute(
        sa.select(conversations.c.id, conversations.c.channel)
        .where(conversations.c.contact_id == target_id)
        .order_by(conversations.c.id.desc())
        .limit(1)
    ).first()
    if latest is not None:
        conn.execute(
            sa.insert(messages).values(
                conversation_id=latest.id,
                contact_id=target_id,
                channel=latest.channel,
                direction=Direction.INTERNAL.value,
                kind=MessageKind.EVENT.value,
                author_kind=AuthorKind.SYSTEM.value,
                author_id=actor_id,
                body=f"Contact #{source_id} merged into this contact" + (f" ({reason})" if reason else ""),
                attachments=[],
                delivery_status=DeliveryStatus.NONE.value,
                meta={"event": "contacts-merged", "source_id": source_id, "target_id": target_id},
                created_at=now,
            )
        )
    return get_contact(conn, target_id)


def move_contact_rows(conn: Connection, source_id: int, target_id: int, schema: sa.MetaData = metadata) -> None:
    """Point every row that references contact ``source_id`` at ``target_id``
    (``references.MOVED_BY_MERGE``), or delete it (``ERASED_WITH_CONTACT``),
    over every foreign key to contacts in ``schema``. Where a unique
    constraint includes the contact column (one row per contact and key),
    the target's row wins and the source's is dropped instead of colliding."""
    references.check(schema)
    for column in contact_references(schema):
        table = column.table
        if references.column_name(column) in references.ERASED_WITH_CONTACT:
            conn.execute(sa.delete(table).where(column == source_id))
            continue
        for others in references.unique_groups(column):
            theirs = table.alias("theirs")
            clash = sa.exists().where(theirs.c[column.name] == target_id, *(theirs.c[c.name] == c for c in others))
            conn.execute(sa.delete(table).where(column == source_id, clash))
        conn.execute(sa.update(table).where(column == source_id).values({column.name: target_id}))


def search_contacts(conn: Connection, query: str | None, *, limit: int, after_id: int | None) -> list[Contact]:
    stmt = sa.select(contacts).order_by(contacts.c.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(contacts.c.id > after_id)
    if query:
        pattern = f"%{query.strip().lower()}%"
        by_identity = sa.select(identities.c.contact_id).where(sa.func.lower(identities.c.address).like(pattern))
        stmt = stmt.where(sa.or_(sa.func.lower(contacts.c.name).like(pattern), contacts.c.id.in_(by_identity)))
    found = conn.execute(stmt).all()
    if not found:
        return []
    ids = [r.id for r in found]
    by_contact: dict[int, list[Identity]] = {i: [] for i in ids}
    for r in conn.execute(sa.select(identities).where(identities.c.contact_id.in_(ids)).order_by(identities.c.id)):
        by_contact[r.contact_id].append(rows.identity(r))
    return [rows.contact(r, by_contact[r.id]) for r in found]


def update_contact(conn: Connection, contact_id: int, changes: dict[str, Any]) -> Contact:
    get_contact(conn, contact_id)
    values = {k: v for k, v in changes.items() if k in {"name", "attributes", "tags"}}
    if values:
        values["updated_at"] = utcnow()
        conn.execute(sa.update(contacts).where(contacts.c.id == contact_id).values(**values))
    return get_contact(conn, contact_id)


def export_contact(conn: Connection, contact_id: int) -> dict[str, Any]:
    """Everything the hub stores about one person (GDPR art. 15 / CCPA right to know)."""
    contact = get_contact(conn, contact_id)
    convs = conn.execute(
        sa.select(conversations).where(conversations.c.contact_id == contact_id).order_by(conversations.c.id)
    ).all()
    msgs = conn.execute(sa.select(messages).where(messages.c.contact_id == contact_id).order_by(messages.c.id)).all()
    found = conn.execute(sa.select(tickets).where(tickets.c.contact_id == contact_id).order_by(tickets.c.id)).all()
    ticket_ids = [t.id for t in found]
    owned_identities = identities_of(conn, contact_id)
    merged = merged_into(conn, contact_id)
    about = [
        sa.and_(audit_log.c.target_type == "contact", audit_log.c.target_id.in_(_ids([contact_id, *merged]))),
        sa.and_(audit_log.c.target_type == "identity", audit_log.c.target_id.in_(_ids(i.id for i in owned_identities))),
        sa.and_(audit_log.c.target_type == "conversation", audit_log.c.target_id.in_(_ids(c.id for c in convs))),
        sa.and_(audit_log.c.target_type == "ticket", audit_log.c.target_id.in_(_ids(ticket_ids))),
        sa.and_(audit_log.c.target_type == "message", audit_log.c.target_id.in_(_ids(m.id for m in msgs))),
    ]
    audit = conn.execute(sa.select(audit_log).where(sa.or_(*about)).order_by(audit_log.c.id)).all()
    return {
        "contact": contact.to_dict(),
        # Earlier records of the same person, merged into this one: the
        # audit entries below that name them are about this person too.
        "merged_contact_ids": merged,
        "identities": [i.to_dict() for i in owned_identities],
        "conversations": [rows.conversation(c).to_dict() for c in convs],
        "messages": [rows.message(m).to_dict() for m in msgs],
        "tickets": [_ticket_export(t) for t in found],
        "ticket_events": _ticket_events(found, msgs),
        "surveys": _surveys_export(conn, [c.id for c in convs]),
        "audit": [audit_entry(a) for a in audit],
        "exported_at": utcnow().isoformat(),
    }


def _surveys_export(conn: Connection, conversation_ids: list[int]) -> list[dict[str, Any]]:
    """The satisfaction surveys (CSAT, NPS) sent to this person, with their answers."""
    if not conversation_ids:
        return []
    found = conn.execute(
        sa.select(csat_surveys).where(csat_surveys.c.conversation_id.in_(conversation_ids)).order_by(csat_surveys.c.id)
    )
    stamps = ("sent_at", "expires_at", "answered_at")
    return [
        {k: (v.isoformat() if k in stamps and v is not None else v) for k, v in row._mapping.items()} for row in found
    ]


def _ids(ids: Iterable[int]) -> list[str]:
    """Ids as ``audit_log.target_id`` holds them."""
    return [str(i) for i in ids]


def merged_into(conn: Connection, contact_id: int) -> list[int]:
    """The contacts merged into ``contact_id``, directly or through one that
    was: earlier records of the same person, whose ids audit entries still
    name. Read from the merge events of its timeline (they move with the
    messages, merge after merge) and from the merge audit entries (a merge
    into a contact without a conversation leaves no event)."""
    found: set[int] = set()
    events = conn.execute(
        sa.select(messages.c.meta).where(
            messages.c.contact_id == contact_id, messages.c.kind == MessageKind.EVENT.value
        )
    ).scalars()
    for meta in events:
        if meta.get("event") == "contacts-merged" and isinstance(meta.get("source_id"), int):
            found.add(meta["source_id"])
    frontier = [contact_id, *found]
    while frontier:
        merges = conn.execute(
            sa.select(audit_log.c.details).where(
                audit_log.c.action == "contact.merge",
                audit_log.c.target_type == "contact",
                audit_log.c.target_id.in_(_ids(frontier)),
            )
        ).scalars()
        frontier = []
        for details in merges:
            source = (details or {}).get("source_id")
            if isinstance(source, int) and source != contact_id and source not in found:
                found.add(source)
                frontier.append(source)
    return sorted(found)


def _ticket_events(found: Sequence[Any], msgs: Sequence[Any]) -> list[dict[str, Any]]:
    """Each ticket's history (opened, assigned, priority, escalated,
    resolved...): the timeline events of its conversation from the ticket's
    opening until the conversation's next ticket opens, each with the
    ticket's id."""
    events = []
    for ticket in found:
        following = [t.created_at for t in found if t.conversation_id == ticket.conversation_id and t.id > ticket.id]
        until = min(following, default=None)
        for m in msgs:
            if m.kind != MessageKind.EVENT.value or m.conversation_id != ticket.conversation_id:
                continue
            if ticket.created_at <= m.created_at and (until is None or m.created_at < until):
                events.append({"ticket_id": ticket.id, **rows.message(m).to_dict()})
    return events


def _ticket_export(row: Any) -> dict[str, Any]:
    from hub.tickets.model import ticket_from_row  # tickets build on conversations, not the other way

    return ticket_from_row(row).to_dict()


# --- erasure ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErasedTicket:
    id: int
    conversation_id: int
    slack_channel: str | None
    slack_ts: str | None


class Erasure(dict[str, int]):
    """What ``erase_contact`` did: rows deleted (or scrubbed) per kind, the
    dict the API and the CLI report (``{"messages": 3, "tickets": 1, ...}``).

    Its attributes say what was erased (the conversations, the tickets with
    their Slack cards), for a caller with more to clean up outside the
    database: it queues that in the same transaction, after the erasure
    (whose deletions would take jobs of the erased tickets with them).
    """

    contact_id: int
    conversation_ids: list[int]
    tickets: list[ErasedTicket]

    def __init__(self, contact_id: int, conversation_ids: list[int], tickets: list[ErasedTicket]) -> None:
        super().__init__()
        self.contact_id = contact_id
        self.conversation_ids = conversation_ids
        self.tickets = tickets

    def count(self, kind: str, rows: int) -> None:
        self[kind] = self.get(kind, 0) + max(rows, 0)


RowsOf = Callable[[str], "sa.Select[Any]"]


def _scrub_phrasings(conn: Connection, erasure: Erasure, rows_of: RowsOf) -> None:
    """A phrasing suggestion keeps a customer's question (from a helpful vote
    on the bot's answer, or before an agent linked an article). One only
    this contact gave, that no admin accepted into an article, goes with them;
    a phrasing others asked too (votes > 1) is no longer theirs alone and
    loses its conversation link (ON DELETE SET NULL)."""
    erasure.count(
        "kb_phrasing_suggestions",
        conn.execute(
            sa.delete(kb_phrasing_suggestions).where(
                kb_phrasing_suggestions.c.conversation_id.in_(rows_of("conversations")),
                kb_phrasing_suggestions.c.votes == 1,
                kb_phrasing_suggestions.c.status != "accepted",
            )
        ).rowcount,
    )


def _scrub_slack_jobs(conn: Connection, erasure: Erasure, rows_of: RowsOf) -> None:
    """Slack jobs name their ticket without a foreign key (they outlive it to
    post its last update), and older ones copied the customer's text: the
    contact's go with them, done or not, and so do the team notices about
    their tickets (no ticket id; their dedup key names it)."""
    ticket_ids = [t.id for t in erasure.tickets]
    if not ticket_ids:
        return
    notices = [slack_jobs.c.dedup_key.like(f"breach:{ticket_id}:%") for ticket_id in ticket_ids]
    erasure.count(
        "slack_jobs",
        conn.execute(
            sa.delete(slack_jobs).where(
                sa.or_(
                    slack_jobs.c.ticket_id.in_(ticket_ids),
                    sa.and_(slack_jobs.c.ticket_id.is_(None), sa.or_(*notices)),
                )
            )
        ).rowcount,
    )


# One scrub per place that holds a contact's data without cascading from
# their rows (``references.SCRUBBED``).
_SCRUBS: dict[str, Callable[[Connection, Erasure, RowsOf], None]] = {
    "kb_phrasing_suggestions.conversation_id": _scrub_phrasings,
    "slack_jobs.ticket_id": _scrub_slack_jobs,
}
if set(_SCRUBS) != references.SCRUBBED:
    raise RuntimeError("hub.conversations.references.SCRUBBED and contacts._SCRUBS differ")


def _owned_rows(contact_id: int, schema: sa.MetaData = metadata) -> dict[str, sa.ColumnElement[bool]]:
    """For each table of ``references.owned_tables``, the condition that
    selects the contact's rows in it (through any of its ties)."""
    where: dict[str, sa.ColumnElement[bool]] = {}
    for name, ties in references.owned_tables(schema).items():
        conditions = []
        for fk in ties:
            parent = fk.column.table.name
            if parent == "contacts":
                conditions.append(fk.parent == contact_id)
            else:
                conditions.append(fk.parent.in_(sa.select(fk.column).where(where[parent])))
        where[name] = sa.or_(*conditions)
    return where


def erase_contact(conn: Connection, contact_id: int) -> Erasure:
    """Delete the contact and everything about them from every table (GDPR
    art. 17), in the caller's transaction: every row that references them
    and every row owned through those (``hub.conversations.references``),
    then what holds their data without a foreign key (``_SCRUBS``). Audit
    entries about them keep actions and ids, not details.

    What the hub put outside its database (Slack cards, Rasa trackers) is
    erased by durable jobs queued here (``_queue_clean_up_outside``).
    Returns the counts per kind (an ``Erasure``).
    """
    get_contact(conn, contact_id)
    references.check()
    erasure = Erasure(contact_id, conversation_ids=[], tickets=[])
    with_bot: list[int] = []
    _remember_erased_deliveries(conn, contact_id)
    erased_for_reports.keep(conn, contact_id)  # the reports' counts stay, without the person
    _erase_rows(conn, erasure, with_bot)
    if hold_contact(conn, contact_id) is None:
        raise NotFound(f"contact {contact_id} does not exist")  # erased or merged away meanwhile
    _remember_erased_deliveries(conn, contact_id)
    erased_for_reports.keep(conn, contact_id)
    _erase_rows(conn, erasure, with_bot)  # what writers committed until the contact was held
    conn.execute(sa.delete(contacts).where(contacts.c.id == contact_id))
    search.purge_deleted(conn)  # no token of their words left in the search index
    _queue_clean_up_outside(conn, erasure, with_bot)
    return erasure


def erased_key(external_id: str) -> str:
    return hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).hexdigest()


def _remember_erased_deliveries(conn: Connection, contact_id: int) -> None:
    """Hashes of the provider ids of what the contact sent, so that the same
    delivery read again (a mailbox re-scanned) is not taken in again."""
    found = conn.execute(
        sa.select(messages.c.channel, messages.c.external_id).where(
            messages.c.contact_id == contact_id, messages.c.external_id.is_not(None)
        )
    ).all()
    if found:
        now = utcnow()
        rows = [
            {"channel": channel, "external_key": erased_key(external_id), "created_at": now}
            for channel, external_id in found
        ]
        conn.execute(insert_ignore(conn, erased_deliveries).on_conflict_do_nothing(), rows)


def was_erased(conn: Connection, channel: str, external_id: str) -> bool:
    found = conn.execute(
        sa.select(erased_deliveries.c.channel).where(
            erased_deliveries.c.channel == channel, erased_deliveries.c.external_key == erased_key(external_id)
        )
    ).first()
    return found is not None


def _erase_rows(conn: Connection, erasure: Erasure, with_bot: list[int]) -> None:
    """One pass over the contact's rows as they are now: delete them,
    scrub what names them, add what was erased to ``erasure`` and the
    conversations the bot took part in to ``with_bot``."""
    contact_id = erasure.contact_id
    where = _owned_rows(contact_id)

    def rows_of(table_name: str) -> sa.Select[Any]:
        table = metadata.tables[table_name]
        return sa.select(*table.primary_key.columns).where(where[table_name])

    found = conn.execute(
        sa.select(
            tickets.c.id,
            tickets.c.conversation_id,
            tickets.c.slack_channel,
            tickets.c.slack_ts,
            tickets.c.status,
            tickets.c.assignee_id,
            tickets.c.snoozed_until,
        )
        .where(where["tickets"])
        .order_by(tickets.c.id)
    ).all()
    erasure.conversation_ids += conn.execute(rows_of("conversations").order_by(conversations.c.id)).scalars()
    erasure.tickets += [ErasedTicket(t.id, t.conversation_id, t.slack_channel, t.slack_ts) for t in found]
    # Conversations the bot took part in have a Rasa tracker holding what the
    # customer said (emptied once their bot jobs are gone).
    with_bot += conn.execute(
        sa.select(bot_jobs.c.conversation_id)
        .distinct()
        .where(bot_jobs.c.conversation_id.in_(rows_of("conversations")))
        .order_by(bot_jobs.c.conversation_id)
    ).scalars()
    for scrub in _SCRUBS.values():
        scrub(conn, erasure, rows_of)
    from hub.tickets import agents as agents_tx  # tickets build on conversations, not the other way

    load: dict[int, int] = {}
    for t in found:
        if t.status == "open" and t.assignee_id is not None and t.snoozed_until is None:
            load[t.assignee_id] = load.get(t.assignee_id, 0) + 1
    for assignee_id, count in load.items():
        agents_tx.book(conn, assignee_id, -count)  # their open tickets go with the contact
    # Audit entries about the contact and their rows keep the action and the
    # ids (not personal data once the rows are gone), not the details.
    about = [
        sa.and_(
            audit_log.c.target_type == "contact",
            audit_log.c.target_id.in_(_ids([contact_id, *merged_into(conn, contact_id)])),
        )
    ]
    for target_type, table in {
        "conversation": conversations,
        "message": messages,
        "ticket": tickets,
        "identity": identities,
    }.items():
        ids = sa.select(sa.cast(table.c.id, sa.String)).where(where[table.name])
        about.append(sa.and_(audit_log.c.target_type == target_type, audit_log.c.target_id.in_(ids)))
    cleared = sa.update(audit_log).where(sa.or_(*about), sa.cast(audit_log.c.details, sa.String) != "{}")
    erasure.count("audit_details", conn.execute(cleared.values(details={})).rowcount)
    # Children first: bot jobs and outbox rows, tickets, messages, conversations, identities.
    for name in reversed(list(where)):
        table = metadata.tables[name]
        erasure.count(name, conn.execute(sa.delete(table).where(where[name])).rowcount)


def _queue_clean_up_outside(conn: Connection, erasure: Erasure, with_bot: list[int]) -> None:
    """What the hub put outside its database about the contact, erased by
    durable jobs written in the erasure's transaction (after its deletions,
    which would take jobs of the erased tickets with them), whichever door
    erases (API or CLI): so the imports reach up to the Slack desk's and
    the bot's and the webhooks' queues here on purpose."""
    from hub.bot.bridge import enqueue_forget
    from hub.slack import jobs as slack_queue

    # Each Slack card posted about them (channel and ts only), with the hub's
    # messages in its thread.
    posted = [t for t in erasure.tickets if t.slack_ts is not None]
    for card in posted:
        assert card.slack_channel is not None and card.slack_ts is not None
        slack_queue.enqueue_erase(conn, card.slack_channel, card.slack_ts)
    erasure.count("slack_cards", len(posted))
    # Each Rasa tracker the bot kept: a forget job empties it (``hub.bot.bridge``).
    for conversation_id in with_bot:
        enqueue_forget(conn, conversation_id)
    erasure.count("bot_trackers", len(with_bot))
    # Integrators hear of it, to erase their copies (``hub.webhooks``): ids only.
    # Their deliveries about the contact went with the contact's rows above.
    from hub.webhooks.store import enqueue_event

    notified = enqueue_event(
        conn,
        "contact.erased",
        lambda: {"contact_id": erasure.contact_id, "conversation_ids": list(erasure.conversation_ids)},
        event_key=f"contact.erased:{erasure.contact_id}",
        now=utcnow(),
    )
    if notified:
        erasure.count("webhooks_notified", notified)
