"""What in the database belongs to a contact, read from the schema (STYLE habit 14).

A merge and an erasure must reach every row of a contact, and the next table
that points at contacts must not be forgotten. So neither keeps its own list
of tables: both walk ``hub.storage.schema.metadata``.

- **Foreign keys to contacts** (``contact_references``): each is either moved
  by a merge (``MOVED_BY_MERGE``: the rows follow the surviving contact) or
  deleted with the merged-away contact (``ERASED_WITH_CONTACT``: rows about
  that one record only). An erasure deletes both.
- **Rows owned through them** (``owned_tables``): a table whose foreign key
  into a contact's rows cascades (messages of a conversation, bot jobs and
  outbox rows of a message, tickets of a conversation) goes with them. A
  merge moves nothing there (the parent keeps its id); an erasure deletes
  them explicitly, children first, and counts them.
- **Rows that hold a contact's data without cascading** (``SCRUBBED``): a
  foreign key into a contact's rows that sets NULL (the row would survive,
  with its text), or a column named like one (``ticket_id``) without a
  foreign key (queues outlive their rows on purpose). Each has its own
  scrub in ``hub.conversations.contacts``.

- **Facts the reports keep** (``KEPT_FOR_REPORTS``): ``report_erased_*`` rows
  name the ids an erasure deleted, on purpose and without personal data, so
  that report counts stay (``hub.reports.erased``).

``unhandled_contact_references`` lists what falls in none of these; merge
and erasure refuse to run while it is not empty, and a test asserts it is.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub.storage.schema import metadata

# Foreign keys to contacts.id whose rows a merge points at the surviving contact.
MOVED_BY_MERGE: frozenset[str] = frozenset(
    {
        "identities.contact_id",
        "conversations.contact_id",
        "messages.contact_id",
        "tickets.contact_id",
        # An opt-out is the person's wish, whichever record holds the address.
        "opt_outs.contact_id",
        # A webhook delivery about the contact still goes out, naming the record it was about.
        "webhook_deliveries.contact_id",
    }
)
# Foreign keys to contacts.id whose rows are about one contact record and
# are deleted with it, by a merge too (none yet: a per-record cache would be).
ERASED_WITH_CONTACT: frozenset[str] = frozenset()

# Columns outside a contact's own rows that still name them: each is scrubbed
# by erasure (``hub.conversations.contacts._SCRUBS`` has one function per key).
SCRUBBED: frozenset[str] = frozenset(
    {
        # A customer's question offered as an article phrasing; the link sets NULL.
        "kb_phrasing_suggestions.conversation_id",
        # Slack jobs outlive their ticket (to post its last update): no foreign key.
        "slack_jobs.ticket_id",
    }
)

# Columns that keep naming a contact's rows after an erasure deleted them, on
# purpose and without personal data: the facts the reports keep so that their
# counts stay (``hub.reports.erased``: ids of rows that no longer exist,
# channels, times, no contact and no text).
KEPT_FOR_REPORTS: frozenset[str] = frozenset(
    {
        "report_erased_tickets.conversation_id",
        "report_erased_messages.conversation_id",
        # The bot report's flags of a conversation (``hub.reports.rollups``),
        # detached (set NULL) by the erasure: they stay, naming nothing.
        "report_bot_conversations.conversation_id",
    }
)


def column_name(column: sa.Column[Any]) -> str:
    return f"{column.table.name}.{column.name}"


def contact_references(schema: sa.MetaData = metadata) -> list[sa.Column[Any]]:
    """The columns that reference ``contacts.id``, children before parents
    (the order an erasure deletes in)."""
    found = [
        fk.parent for table in schema.sorted_tables for fk in table.foreign_keys if fk.column.table.name == "contacts"
    ]
    return list(reversed(found))


def owned_tables(schema: sa.MetaData = metadata) -> dict[str, list[sa.ForeignKey]]:
    """Tables whose rows belong to a contact, parents first, each with the
    foreign keys that tie a row to the contact (to contacts itself, or
    cascading from a table already owned)."""
    owned: dict[str, list[sa.ForeignKey]] = {}
    for table in schema.sorted_tables:
        if table.name == "contacts":
            continue
        ties = [
            fk
            for fk in table.foreign_keys
            if fk.column.table.name == "contacts"
            or (fk.column.table.name in owned and (fk.ondelete or "").upper() == "CASCADE")
        ]
        if ties:
            owned[table.name] = ties
    return owned


def _singular(table_name: str) -> str:
    return table_name[:-3] + "y" if table_name.endswith("ies") else table_name.removesuffix("s")


def unhandled_contact_references(schema: sa.MetaData = metadata) -> list[str]:
    """``table.column`` of every place that can hold a contact's rows or data
    that merge and erasure do not know what to do with."""
    unhandled = [
        column_name(column)
        for column in contact_references(schema)
        if column_name(column) not in MOVED_BY_MERGE | ERASED_WITH_CONTACT
    ]
    owned = owned_tables(schema)
    id_names = {f"{_singular(name)}_id" for name in [*owned, "contacts"]}
    for table in schema.sorted_tables:
        if table.name in owned or table.name == "contacts":
            continue  # the whole row goes with the contact
        for column in table.columns:
            to_owned = [fk for fk in column.foreign_keys if fk.column.table.name in owned]
            if (to_owned or (column.name in id_names and not column.foreign_keys)) and column_name(
                column
            ) not in SCRUBBED | KEPT_FOR_REPORTS:
                unhandled.append(column_name(column))
    return unhandled


def check(schema: sa.MetaData = metadata) -> None:
    """Raise when the schema has a reference to a contact that is not handled."""
    unhandled = unhandled_contact_references(schema)
    if unhandled:
        raise RuntimeError(f"merge/erase do not handle {', '.join(unhandled)}: see hub.conversations.references")


def unique_groups(column: sa.Column[Any]) -> list[list[sa.Column[Any]]]:
    """The other columns of each unique constraint or index that includes
    ``column``: moving rows onto another contact could collide on them."""
    table = column.table
    groups: list[list[sa.Column[Any]]] = []
    keys = [list(c.columns) for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    keys += [list(i.columns) for i in table.indexes if i.unique]
    for columns in keys:
        if any(c is column for c in columns):
            groups.append([c for c in columns if c is not column])
    if column.unique:
        groups.append([])
    return groups
