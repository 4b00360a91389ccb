"""Message search (FTS5 / tsvector) and the console inbox's indexes

SQLite: ``messages_fts``, an FTS5 table with external content (the
``messages`` table: the index keeps tokens, never a second copy of the
text), kept in step by triggers on insert, update of ``body`` and delete; the
``unicode61 remove_diacritics 2`` tokenizer folds case and accents.
``detail=none``: the index keeps which messages hold a word, not where
(searches require words and prefixes, never phrases): a third less work
per stored message, on the ingest path.

PostgreSQL: ``messages.search_vector``, a stored generated ``tsvector``
(``'simple'``: no stemming, no stop words, so every language works), with a
GIN index. It goes with its row, so an erasure leaves nothing of it.

The inbox orders conversations by last activity
(``COALESCE(last_message_at, created_at)``, then ``id``); partial indexes
on the conversations that are not resolved serve its views (all open, mine,
urgent), one on ``status`` the resolved view and the status filter.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 07:30:00
"""

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ACTIVITY = 'COALESCE(last_message_at, created_at)'
# (index name, columns, partial condition); literal conditions, which SQLite
# matches against the queries' own literal terms (hub.console.inbox).
INBOX_INDEXES = (
    ('ix_conversations_inbox_open', f'{ACTIVITY}, id', "status <> 'resolved'"),
    ('ix_conversations_inbox_assignee', f'assignee_id, {ACTIVITY}, id', "status <> 'resolved'"),
    ('ix_conversations_inbox_priority', f'priority, {ACTIVITY}, id', "status <> 'resolved'"),
    ('ix_conversations_inbox_status', f'status, {ACTIVITY}, id', None),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        op.execute(
            "CREATE VIRTUAL TABLE messages_fts USING fts5("
            "body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2', detail=none)"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
            "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
            "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
            "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
            "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
        )
        op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    elif dialect == 'postgresql':
        op.execute(
            "ALTER TABLE messages ADD COLUMN search_vector tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, body)) STORED"
        )
        op.execute("CREATE INDEX ix_messages_search_vector ON messages USING gin (search_vector)")
    for name, columns, where in INBOX_INDEXES:
        op.execute(f"CREATE INDEX {name} ON conversations ({columns})" + (f" WHERE {where}" if where else ""))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, _, _ in INBOX_INDEXES:
        op.execute(f"DROP INDEX {name}")
    if dialect == 'sqlite':
        for trigger in ('messages_fts_insert', 'messages_fts_delete', 'messages_fts_update'):
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute("DROP TABLE messages_fts")
    elif dialect == 'postgresql':
        op.execute("DROP INDEX ix_messages_search_vector")
        op.execute("ALTER TABLE messages DROP COLUMN search_vector")
