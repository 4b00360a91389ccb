"""Report rollups, second part: each ticket's first agent reply
(tickets.first_reply_id, first_responder_id) and the agents' replies and
notes per quarter-hour (report_agent_quarters), kept by triggers

The response-times report credits a first response to its responder: the
author of the conversation's first agent reply (customer-visible, outbound,
smallest id) stored at or after the ticket's ``created_at``. Triggers keep
it on the ticket in the transaction of every insert into ``messages`` (an
earlier reply, by id, replaces a later one, whatever order they commit in)
and ``tickets`` (replies stored before the ticket), and of every delete from
``messages`` (the next reply takes its place).

The agents report counts each agent's replies and notes per bucket;
``report_agent_quarters`` holds them per UTC quarter-hour and agent, added
in the transaction of every insert into ``messages`` as migration 0019's
volume counts are (``hub.reports.rollups``: nothing is subtracted, an
erasure's rows stay counted as the report counts them).

The bot report counts the bot's turns by decision: distinct (decision,
turn) among its replies in the range. ``report_bot_turns.since`` holds, per
reply, the time of the reply before it of the same decision and turn (NULL
for the first; in (created_at, message_id) order), kept by triggers on
inserts and deletes of ``report_bot_turns``, so a turn is counted once, by
its first reply in the range (``since`` NULL or before the range): a count,
not a COUNT DISTINCT.

The agents report's claims and resolves read ``ix_audit_log_action``.

All filled here from what is stored (live and erased rows).

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29 15:00:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

_AGENT_REPLY = "{m}kind = 'message' AND {m}direction = 'outbound' AND {m}author_kind = 'agent'"
# The first agent reply of ticket ``{t}``'s conversation since it opened: (id, author).
_FIRST_REPLY = f"""
    SELECT m.id, m.author_id FROM messages AS m
    WHERE m.conversation_id = {{t}}.conversation_id AND {_AGENT_REPLY.format(m='m.')}
      AND m.created_at >= {{t}}.created_at
    ORDER BY m.id LIMIT 1
"""

# The agents report's replies and notes: an agent's customer-visible reply or note.
_AGENT_WRITES = (
    "{m}author_kind = 'agent' AND {m}author_id IS NOT NULL"
    " AND ({m}kind = 'note' OR ({m}kind = 'message' AND {m}direction = 'outbound'))"
)
_SQLITE_QUARTER = 'unixepoch(substr({column}, 1, 19)) / 900'
_PG_QUARTER = "CAST(FLOOR(date_part('epoch', {column})) AS BIGINT) / 900"

# Each reply of turn {turn}'s, in order, after the one before of the same decision.
_SINCE = """
    SELECT message_id, LAG(created_at) OVER (PARTITION BY decision, turn ORDER BY created_at, message_id) AS since
    FROM report_bot_turns WHERE {where}
"""

_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER report_bot_turn_since AFTER INSERT ON report_bot_turns
    BEGIN
        UPDATE report_bot_turns SET since = w.since FROM ({_SINCE.format(where='turn = NEW.turn')}) AS w
        WHERE report_bot_turns.message_id = w.message_id AND report_bot_turns.since IS NOT w.since;
    END
    """,
    f"""
    CREATE TRIGGER report_bot_turn_gone AFTER DELETE ON report_bot_turns
    BEGIN
        UPDATE report_bot_turns SET since = w.since FROM ({_SINCE.format(where='turn = OLD.turn')}) AS w
        WHERE report_bot_turns.message_id = w.message_id AND report_bot_turns.since IS NOT w.since;
    END
    """,
    f"""
    CREATE TRIGGER report_agent_message AFTER INSERT ON messages WHEN {_AGENT_WRITES.format(m='NEW.')}
    BEGIN
        INSERT INTO report_agent_quarters (quarter, agent_id, replies, notes)
        VALUES ({_SQLITE_QUARTER.format(column='NEW.created_at')}, NEW.author_id, NEW.kind = 'message', NEW.kind = 'note')
        ON CONFLICT (quarter, agent_id) DO UPDATE SET
            replies = replies + excluded.replies, notes = notes + excluded.notes;
    END
    """,
    f"""
    CREATE TRIGGER report_first_reply_message AFTER INSERT ON messages WHEN {_AGENT_REPLY.format(m='NEW.')}
    BEGIN
        UPDATE tickets SET first_reply_id = NEW.id, first_responder_id = NEW.author_id
        WHERE conversation_id = NEW.conversation_id AND created_at <= NEW.created_at
          AND (first_reply_id IS NULL OR first_reply_id > NEW.id);
    END
    """,
    f"""
    CREATE TRIGGER report_first_reply_ticket AFTER INSERT ON tickets
    BEGIN
        UPDATE tickets SET (first_reply_id, first_responder_id) = ({_FIRST_REPLY.format(t='tickets')})
        WHERE id = NEW.id;
    END
    """,
    f"""
    CREATE TRIGGER report_first_reply_deleted AFTER DELETE ON messages WHEN {_AGENT_REPLY.format(m='OLD.')}
    BEGIN
        UPDATE tickets SET (first_reply_id, first_responder_id) = ({_FIRST_REPLY.format(t='tickets')})
        WHERE conversation_id = OLD.conversation_id AND first_reply_id = OLD.id;
    END
    """,
]

# PostgreSQL: statement triggers over the inserted or deleted rows (a
# multi-row INSERT or a COPY in one statement), as migration 0019's.
_PG_SINCE_UPDATE = f"""
    UPDATE report_bot_turns AS t SET since = w.since
    FROM ({_SINCE.format(where='turn IN (SELECT turn FROM {changed})')}) AS w
    WHERE t.message_id = w.message_id AND t.since IS DISTINCT FROM w.since
"""
_PG_TRIGGERS = [
    f"""
    CREATE FUNCTION report_bot_turns_since() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_PG_SINCE_UPDATE.format(changed='changed')};
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_bot_turns_since AFTER INSERT ON report_bot_turns
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION report_bot_turns_since()
    """,
    """
    CREATE TRIGGER report_bot_turns_gone AFTER DELETE ON report_bot_turns
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION report_bot_turns_since()
    """,
    f"""
    CREATE FUNCTION report_agent_messages() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO report_agent_quarters AS r (quarter, agent_id, replies, notes)
        SELECT quarter, author_id, COUNT(*) FILTER (WHERE kind = 'message'), COUNT(*) FILTER (WHERE kind = 'note')
        FROM (
            SELECT {_PG_QUARTER.format(column='created_at')} AS quarter, author_id, kind FROM inserted
            WHERE {_AGENT_WRITES.format(m='')}
        ) AS rows
        GROUP BY quarter, author_id
        ORDER BY quarter, author_id
        ON CONFLICT (quarter, agent_id) DO UPDATE SET
            replies = r.replies + excluded.replies, notes = r.notes + excluded.notes;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_agent_messages AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_agent_messages()
    """,
    f"""
    CREATE FUNCTION report_first_reply_messages() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE tickets AS t SET first_reply_id = n.id, first_responder_id = n.author_id
        FROM (
            SELECT DISTINCT ON (o.id) o.id AS ticket_id, m.id, m.author_id
            FROM inserted AS m JOIN tickets AS o
              ON o.conversation_id = m.conversation_id AND o.created_at <= m.created_at
            WHERE {_AGENT_REPLY.format(m='m.')}
            ORDER BY o.id, m.id
        ) AS n
        WHERE t.id = n.ticket_id AND (t.first_reply_id IS NULL OR t.first_reply_id > n.id);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_first_reply_messages AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_first_reply_messages()
    """,
    f"""
    CREATE FUNCTION report_first_reply_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE tickets AS t SET (first_reply_id, first_responder_id) = ({_FIRST_REPLY.format(t='t')})
        FROM inserted AS n
        WHERE t.id = n.id
          AND EXISTS (SELECT 1 FROM messages AS m WHERE m.conversation_id = n.conversation_id
                      AND {_AGENT_REPLY.format(m='m.')} AND m.created_at >= n.created_at);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_first_reply_tickets AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_first_reply_tickets()
    """,
    f"""
    CREATE FUNCTION report_first_reply_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE tickets AS t SET (first_reply_id, first_responder_id) = ({_FIRST_REPLY.format(t='t')})
        FROM (SELECT conversation_id, id FROM deleted WHERE {_AGENT_REPLY.format(m='')}) AS d
        WHERE t.conversation_id = d.conversation_id AND t.first_reply_id = d.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_first_reply_deleted AFTER DELETE ON messages
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION report_first_reply_deleted()
    """,
]


# Live and erased rows (an erasure keeps agents' replies and notes).
_BACKFILL_AGENTS = """
    INSERT INTO report_agent_quarters (quarter, agent_id, replies, notes)
    SELECT quarter, author_id, SUM(CASE WHEN kind = 'message' THEN 1 ELSE 0 END),
           SUM(CASE WHEN kind = 'note' THEN 1 ELSE 0 END)
    FROM (
        SELECT {quarter} AS quarter, author_id, kind FROM messages WHERE {writes}
        UNION ALL SELECT {quarter} AS quarter, author_id, kind FROM report_erased_messages WHERE {writes}
    ) AS written
    GROUP BY quarter, author_id
"""


def upgrade() -> None:
    op.create_index('ix_audit_log_action', 'audit_log', ['action', 'created_at', 'user_id'])
    op.add_column('report_bot_turns', sa.Column('since', UTCDateTime(timezone=True), nullable=True))
    op.drop_index('ix_report_bot_turns_created', table_name='report_bot_turns')
    op.create_index(
        'ix_report_bot_turns_created', 'report_bot_turns', ['created_at', 'decision', 'since', 'channel']
    )
    op.create_index('ix_report_bot_turns_turn', 'report_bot_turns', ['turn'])
    op.create_table(
        'report_agent_quarters',
        sa.Column('quarter', sa.BigInteger(), nullable=False),
        sa.Column('agent_id', sa.BigInteger(), nullable=False),
        sa.Column('replies', sa.BigInteger(), nullable=False),
        sa.Column('notes', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('quarter', 'agent_id', name='pk_report_agent_quarters'),
    )
    op.add_column('tickets', sa.Column('first_reply_id', BigId, nullable=True))
    op.add_column('tickets', sa.Column('first_responder_id', BigId, nullable=True))
    postgresql = op.get_bind().dialect.name == 'postgresql'
    # Triggered, then filled, in one transaction (as migration 0019).
    for statement in _PG_TRIGGERS if postgresql else _SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(f'UPDATE tickets SET (first_reply_id, first_responder_id) = ({_FIRST_REPLY.format(t="tickets")})')
    quarter = (_PG_QUARTER if postgresql else _SQLITE_QUARTER).format(column='created_at')
    op.execute(_BACKFILL_AGENTS.format(quarter=quarter, writes=_AGENT_WRITES.format(m='')))
    op.execute(
        f'UPDATE report_bot_turns SET since = w.since FROM ({_SINCE.format(where="since IS NULL")}) AS w'
        ' WHERE report_bot_turns.message_id = w.message_id AND w.since IS NOT NULL'
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for trigger, table in (
            ('report_first_reply_deleted', 'messages'),
            ('report_first_reply_tickets', 'tickets'),
            ('report_first_reply_messages', 'messages'),
            ('report_agent_messages', 'messages'),
        ):
            op.execute(f'DROP TRIGGER {trigger} ON {table}')
            op.execute(f'DROP FUNCTION {trigger}()')
        op.execute('DROP TRIGGER report_bot_turns_gone ON report_bot_turns')
        op.execute('DROP TRIGGER report_bot_turns_since ON report_bot_turns')
        op.execute('DROP FUNCTION report_bot_turns_since()')
    else:
        for trigger in (
            'report_first_reply_deleted',
            'report_first_reply_ticket',
            'report_first_reply_message',
            'report_agent_message',
            'report_bot_turn_gone',
            'report_bot_turn_since',
        ):
            op.execute(f'DROP TRIGGER {trigger}')
    # Not a batch (a copy of the table on SQLite, without the triggers of migration 0019).
    op.execute('ALTER TABLE tickets DROP COLUMN first_responder_id')
    op.execute('ALTER TABLE tickets DROP COLUMN first_reply_id')
    op.drop_table('report_agent_quarters')
    op.drop_index('ix_audit_log_action', table_name='audit_log')
    op.drop_index('ix_report_bot_turns_turn', table_name='report_bot_turns')
    op.drop_index('ix_report_bot_turns_created', table_name='report_bot_turns')
    op.execute('ALTER TABLE report_bot_turns DROP COLUMN since')
    op.create_index(
        'ix_report_bot_turns_created', 'report_bot_turns', ['created_at', 'decision', 'turn', 'channel']
    )
