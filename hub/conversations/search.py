"""Full-text search over messages: one query interface, two indexes.

SQLite keeps an FTS5 index (``messages_fts``, external content: tokens only,
kept in step by triggers); PostgreSQL a generated ``tsvector`` column with a
GIN index (migration 0010). Both tokenize on letters and digits and fold
case; FTS5 also folds accents, PostgreSQL's ``'simple'`` configuration does
not (the ``unaccent`` extension is not assumed).

What a person types is never handed to either query language: it is cut
into words here (``query_terms``), each quoted as a plain term, all of them
required in the same message, the last one also as a prefix (as you type).
So ``"``, ``AND OR (`` or ``*:&|!`` can only ever match words or nothing.

This lives beside the conversations, not in the console, because the
erasure (``hub.conversations.contacts``) must purge the index too, and the
Slack desk or the API may search the same way.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.storage.schema import conversations, messages

MAX_TERMS = 16
MAX_TERM_LENGTH = 64
# A prefix shorter than this would match too many words to be useful (and
# FTS5 walks every one of them).
MIN_PREFIX = 3
# A search looks at this many of the most recent matching messages (100
# pages of conversations at least): reading each one's conversation is the
# cost of a search (at a million messages on SQLite, ~35 ms for 5,000 spread
# over the table, ~140 ms for 20,000), so a word found everywhere costs what
# a rarer one does. More words reach further back.
MATCH_LIMIT = 5_000
# Letters and digits (Unicode), as FTS5's unicode61 and PostgreSQL's parser split them.
_WORD = re.compile(r"[^\W_]+")

_FTS = sa.table("messages_fts", sa.column("rowid"))
_FTS_MATCH = sa.literal_column("messages_fts").op("MATCH")
_SEARCH_VECTOR: sa.ColumnElement[Any] = sa.literal_column("messages.search_vector")


def query_terms(text: str) -> list[str]:
    """The words of ``text``, lower-cased, at most ``MAX_TERMS`` of them."""
    words = [w[:MAX_TERM_LENGTH] for w in _WORD.findall(text.lower())]
    return list(dict.fromkeys(words))[:MAX_TERMS]


def fts5_query(terms: list[str]) -> str:
    """An FTS5 query requiring every term: each is a quoted string (the
    terms hold no quote, they are letters and digits)."""
    parts = [f'"{term}"' for term in terms]
    if len(terms[-1]) >= MIN_PREFIX:
        parts[-1] += "*"
    return " ".join(parts)


def tsquery(terms: list[str]) -> str:
    """A ``to_tsquery`` text requiring every term, each a quoted lexeme."""
    parts = [f"'{term}'" for term in terms]
    if len(terms[-1]) >= MIN_PREFIX:
        parts[-1] += ":*"
    return " & ".join(parts)


def matching_messages(dialect: str, text: str, *, limit: int | None = None) -> sa.Select[Any] | None:
    """``SELECT id`` of the ``limit`` (``MATCH_LIMIT``) most recent messages
    that hold every word of ``text``; None when ``text`` has no word to look for."""
    terms = query_terms(text)
    if not terms:
        return None
    limit = limit or MATCH_LIMIT
    if dialect == "sqlite":
        # FTS5 walks its doclists backwards for ORDER BY rowid DESC: no sort.
        return sa.select(_FTS.c.rowid).where(_FTS_MATCH(fts5_query(terms))).order_by(_FTS.c.rowid.desc()).limit(limit)
    return (
        sa.select(messages.c.id)
        .where(_SEARCH_VECTOR.op("@@")(sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), tsquery(terms))))
        .order_by(messages.c.id.desc())
        .limit(limit)
    )


def last_activity() -> sa.ColumnElement[Any]:
    """What the inbox orders by: the last message, or the opening for a
    conversation without one (the expression the 0010 indexes are on)."""
    return sa.func.coalesce(
        conversations.c.last_message_at, conversations.c.created_at, type_=conversations.c.created_at.type
    )


def conversation_matches(conn: Connection, text: str) -> sa.ColumnElement[bool] | None:
    """A condition on ``conversations`` (for a query that orders and pages
    them its own way, as the inbox does): one of the ``MATCH_LIMIT`` most
    recent messages holding every word of ``text`` is theirs. None when
    there is no word to look for.

    The matches drive the query (a doclist walk, then a read of each
    message's conversation): a walk of the conversations probing each one's
    messages would be cheaper for a common word, but SQLite runs a
    subquery inside a correlated one again for every row (seconds).
    """
    found = matching_messages(conn.dialect.name, text)
    if found is None:
        return None
    return conversations.c.id.in_(sa.select(messages.c.conversation_id).where(messages.c.id.in_(found)))


def search_conversations(conn: Connection, text: str, *, limit: int = 50) -> list[int]:
    """Ids of the conversations with a message holding every word of
    ``text``, the most recently active first; [] when it has no word."""
    condition = conversation_matches(conn, text)
    if condition is None:
        return []
    activity = last_activity()
    stmt = (
        sa.select(conversations.c.id).where(condition).order_by(activity.desc(), conversations.c.id.desc()).limit(limit)
    )
    return list(conn.execute(stmt).scalars())


def purge_deleted(conn: Connection) -> None:
    """Leave nothing of deleted messages in the index, in the caller's
    transaction (an erasure's). FTS5 records a deletion as a tombstone
    beside the old entry until segments merge; ``optimize`` merges them all
    now. (SQLite 3.42's ``secure-delete`` would make this unnecessary; the
    Python here links 3.40.) PostgreSQL's vector goes with its row."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
