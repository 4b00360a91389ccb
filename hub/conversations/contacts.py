"""Resolve channel addresses to one contact; merge, export and erase contacts.

Addresses are normalised before they are stored or looked up: e-mail
lower-cased, phone numbers in E.164, channel-local ids stripped. Identity
kinds are ``email``, ``phone`` or a channel name (``webchat``, ``slack``...).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import InvalidInput, NotFound
from hub.events import utcnow
from hub.models import (
    AuthorKind,
    Contact,
    DeliveryStatus,
    Direction,
    Identity,
    MessageKind,
)
from hub.storage import PerDialect, insert_ignore, rows
from hub.storage.schema import (
    audit_log,
    contacts,
    conversations,
    identities,
    kb_phrasing_suggestions,
    messages,
    metadata,
    outbox,
    slack_jobs,
    tickets,
)

# Every foreign key to ``contacts`` and what a merge and an erasure do with
# its rows. Merge and erasure are driven by the schema's own list of those
# keys (``contact_references``): a key missing here makes both refuse to run
# (``unhandled_contact_references``, asserted empty by the tests), so a new
# table that points at contacts cannot be forgotten. "move": a merge points
# the rows at the surviving contact; an erasure deletes them (their own
# dependants go by ON DELETE CASCADE: outbox rows, bot jobs).
CONTACT_REFERENCES: dict[str, str] = {
    "identities.contact_id": "move",
    "conversations.contact_id": "move",
    "messages.contact_id": "move",
    "tickets.contact_id": "move",
}

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
        address = address.lower()
        local, _, domain = address.rpartition("@")
        if not local or "." not in domain or len(address) > EMAIL_MAX or " " in address:
            raise InvalidInput(f"not an e-mail address: {address!r}")
        return address
    if kind == "phone":
        try:
            number = phonenumbers.parse(address, default_region)
        except phonenumbers.NumberParseException as err:
            raise InvalidInput(f"not a phone number: {address!r} ({err})") from err
        if not phonenumbers.is_possible_number(number):
            raise InvalidInput(f"not a possible phone number: {address!r}")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
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


def contact_references(schema: sa.MetaData = metadata) -> list[sa.Column[Any]]:
    """The columns that reference ``contacts.id``, children before parents
    (the order an erasure deletes in)."""
    found = [
        fk.parent for table in schema.sorted_tables for fk in table.foreign_keys if fk.column.table.name == "contacts"
    ]
    return list(reversed(found))


def unhandled_contact_references(schema: sa.MetaData = metadata) -> list[str]:
    """Foreign keys to contacts that merge and erasure do not know what to do with."""
    return [
        f"{column.table.name}.{column.name}"
        for column in contact_references(schema)
        if f"{column.table.name}.{column.name}" not in CONTACT_REFERENCES
    ]


def _references() -> list[sa.Column[Any]]:
    unhandled = unhandled_contact_references()
    if unhandled:
        raise RuntimeError(f"merge/erase do not handle {', '.join(unhandled)}: add them to CONTACT_REFERENCES")
    return contact_references()


def merge_contacts(
    conn: Connection, *, source_id: int, target_id: int, actor_id: int | None = None, reason: str = ""
) -> Contact:
    """Move everything of ``source`` to ``target`` and delete ``source``: one
    transaction, over every foreign key to contacts (``contact_references``).

    Messages keep their ids and timestamps, so the merged timeline stays in
    the order things happened. A system event on the target's latest
    conversation records the merge.
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
    conn.execute(
        sa.update(contacts)
        .where(contacts.c.id == target_id)
        .values(name=target.name or source.name, attributes=attributes, tags=tags, updated_at=now)
    )
    for column in _references():  # identities, conversations, messages, tickets...
        conn.execute(sa.update(column.table).where(column == source_id).values({column.name: target_id}))
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
    # Tickets' history (opened, assigned, escalated, resolved) is on the
    # timeline as event messages, exported with the messages.
    about = [
        sa.and_(audit_log.c.target_type == "contact", audit_log.c.target_id == str(contact_id)),
        sa.and_(audit_log.c.target_type == "conversation", audit_log.c.target_id.in_([str(c.id) for c in convs])),
        sa.and_(audit_log.c.target_type == "ticket", audit_log.c.target_id.in_([str(t.id) for t in found])),
    ]
    audit = conn.execute(sa.select(audit_log).where(sa.or_(*about)).order_by(audit_log.c.id)).all()
    return {
        "contact": contact.to_dict(),
        "identities": [i.to_dict() for i in identities_of(conn, contact_id)],
        "conversations": [rows.conversation(c).to_dict() for c in convs],
        "messages": [rows.message(m).to_dict() for m in msgs],
        "tickets": [_ticket_export(t) for t in found],
        "audit": [
            {
                "id": a.id,
                "user_id": a.user_id,
                "action": a.action,
                "target_type": a.target_type,
                "target_id": a.target_id,
                "details": a.details,
                "created_at": a.created_at.isoformat(),
            }
            for a in audit
        ],
        "exported_at": utcnow().isoformat(),
    }


def _ticket_export(row: Any) -> dict[str, Any]:
    from hub.tickets.model import ticket_from_row  # tickets build on conversations, not the other way

    return ticket_from_row(row).to_dict()


def erase_contact(conn: Connection, contact_id: int) -> dict[str, int]:
    """Delete the contact and everything about them from every table (GDPR art. 17)."""
    get_contact(conn, contact_id)
    references = _references()
    conv_ids = sa.select(conversations.c.id).where(conversations.c.contact_id == contact_id)
    msg_ids = sa.select(messages.c.id).where(messages.c.contact_id == contact_id)
    ticket_ids = sa.select(tickets.c.id).where(tickets.c.contact_id == contact_id)
    # Slack jobs name their ticket without a foreign key (they outlive it
    # to post its last update): the contact's go with them, done or not.
    # What the hub posted in Slack about them goes too: a durable job per
    # card (channel and ts only), whichever door erases (API or CLI), so the
    # import reaches up to the Slack desk's queue here on purpose.
    from hub.slack import jobs as slack_queue

    posted = conn.execute(
        sa.select(tickets.c.id, tickets.c.slack_channel, tickets.c.slack_ts).where(
            tickets.c.contact_id == contact_id, tickets.c.slack_ts.is_not(None)
        )
    ).all()
    # Conversations the bot took part in have a Rasa tracker holding what the
    # customer said: a durable job empties each (``hub.bot.bridge``).
    from hub.bot.bridge import enqueue_forget
    from hub.storage.schema import bot_jobs

    with_bot = (
        conn.execute(sa.select(bot_jobs.c.conversation_id).where(bot_jobs.c.conversation_id.in_(conv_ids)).distinct())
        .scalars()
        .all()
    )
    counts = {
        "slack_jobs": conn.execute(sa.delete(slack_jobs).where(slack_jobs.c.ticket_id.in_(ticket_ids))).rowcount,
        "outbox": conn.execute(sa.delete(outbox).where(outbox.c.message_id.in_(msg_ids))).rowcount,
        "messages": 0,
    }
    # Messages can also sit in conversations of this contact under another
    # contact id only if a merge was interrupted; delete by conversation too.
    counts["messages"] += conn.execute(sa.delete(messages).where(messages.c.conversation_id.in_(conv_ids))).rowcount
    # A phrasing suggestion keeps a customer's question: one that only this
    # contact gave and no admin accepted into an article goes with them; the
    # others lose their conversation link (ON DELETE SET NULL).
    counts["kb_phrasing_suggestions"] = conn.execute(
        sa.delete(kb_phrasing_suggestions).where(
            kb_phrasing_suggestions.c.conversation_id.in_(conv_ids),
            kb_phrasing_suggestions.c.votes == 1,
            kb_phrasing_suggestions.c.status != "accepted",
        )
    ).rowcount
    from hub.tickets import agents as agents_tx  # tickets build on conversations, not the other way

    for assignee_id, count in conn.execute(
        sa.select(tickets.c.assignee_id, sa.func.count())
        .where(
            tickets.c.contact_id == contact_id,
            tickets.c.status == "open",
            tickets.c.assignee_id.is_not(None),
            tickets.c.snoozed_until.is_(None),
        )
        .group_by(tickets.c.assignee_id)
    ).all():
        agents_tx.book(conn, assignee_id, -count)  # their open tickets go with the contact
    for column in references:  # children first: tickets, messages, conversations, identities...
        deleted = conn.execute(sa.delete(column.table).where(column == contact_id)).rowcount
        counts[column.table.name] = counts.get(column.table.name, 0) + deleted
    conn.execute(sa.delete(contacts).where(contacts.c.id == contact_id))
    for card in posted:
        slack_queue.enqueue_erase(conn, card.slack_channel, card.slack_ts)
    counts["slack_cards"] = len(posted)
    for conversation_id in with_bot:
        enqueue_forget(conn, conversation_id)
    counts["bot_trackers"] = len(with_bot)
    # Audit entries about this contact's conversations keep only ids, and
    # ids are not personal data once the rows they point to are gone.
    conn.execute(
        sa.update(audit_log)
        .where(audit_log.c.target_type == "contact", audit_log.c.target_id == str(contact_id))
        .values(details={})
    )
    return counts
