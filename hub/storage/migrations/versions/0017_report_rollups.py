"""Report rollups: the volume report's counts per quarter-hour and channel

``report_volume_quarters``, kept by triggers in the transaction of every
insert into ``messages`` and ``conversations`` (``hub.reports.rollups``),
and filled here from what is already stored (live and erased rows).

Revision ID: 0017
Revises: 0014 (the lead chains it after the parallel branches' migrations)
Create Date: 2026-11-29 10:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0014'
branch_labels = None
depends_on = None

_COLUMNS = 'quarter, channel, shard, inbound, outbound, outbound_bot, outbound_agent, new_conversations'
_ADD = (
    'inbound = {r}inbound + excluded.inbound, outbound = {r}outbound + excluded.outbound,'
    ' outbound_bot = {r}outbound_bot + excluded.outbound_bot,'
    ' outbound_agent = {r}outbound_agent + excluded.outbound_agent,'
    ' new_conversations = {r}new_conversations + excluded.new_conversations'
)

# SQLite: a row trigger each (one writer, so one shard). The quarter is the
# report's epoch second (``hub.reports.sql.EpochSeconds``) divided by 900.
_SQLITE_QUARTER = 'unixepoch(substr({column}, 1, 19)) / 900'
_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER report_volume_message AFTER INSERT ON messages WHEN NEW.kind = 'message'
    BEGIN
        INSERT INTO report_volume_quarters ({_COLUMNS})
        VALUES (
            {_SQLITE_QUARTER.format(column='NEW.created_at')}, NEW.channel, 0,
            NEW.direction = 'inbound', NEW.direction = 'outbound',
            NEW.direction = 'outbound' AND NEW.author_kind = 'bot',
            NEW.direction = 'outbound' AND NEW.author_kind = 'agent', 0
        )
        ON CONFLICT (quarter, channel, shard) DO UPDATE SET {_ADD.format(r='')};
    END
    """,
    f"""
    CREATE TRIGGER report_volume_conversation AFTER INSERT ON conversations
    BEGIN
        INSERT INTO report_volume_quarters ({_COLUMNS})
        VALUES ({_SQLITE_QUARTER.format(column='NEW.created_at')}, NEW.channel, 0, 0, 0, 0, 0, 1)
        ON CONFLICT (quarter, channel, shard) DO UPDATE SET {_ADD.format(r='')};
    END
    """,
]

# PostgreSQL: statement triggers over the inserted rows (a multi-row INSERT or
# a COPY adds its counts in one statement), in key order so that concurrent
# statements lock rows in the same order; the backend's pid picks the shard.
_PG_QUARTER = "CAST(FLOOR(date_part('epoch', {column})) AS BIGINT) / 900"
_PG_INSERT = f"""
    INSERT INTO report_volume_quarters AS r ({_COLUMNS})
    SELECT quarter, channel, CAST(pg_backend_pid() % 8 AS SMALLINT), {{figures}}
    FROM (SELECT {_PG_QUARTER.format(column='created_at')} AS quarter, * FROM inserted {{where}}) AS rows
    GROUP BY quarter, channel
    ORDER BY quarter, channel
    ON CONFLICT (quarter, channel, shard) DO UPDATE SET {_ADD.format(r='r.')}
"""
_PG_MESSAGE_FIGURES = (
    "COUNT(*) FILTER (WHERE direction = 'inbound'), COUNT(*) FILTER (WHERE direction = 'outbound'),"
    " COUNT(*) FILTER (WHERE direction = 'outbound' AND author_kind = 'bot'),"
    " COUNT(*) FILTER (WHERE direction = 'outbound' AND author_kind = 'agent'), 0"
)
_PG_TRIGGERS = [
    f"""
    CREATE FUNCTION report_volume_messages() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_PG_INSERT.format(figures=_PG_MESSAGE_FIGURES, where="WHERE kind = 'message'")};
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_volume_messages AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_volume_messages()
    """,
    f"""
    CREATE FUNCTION report_volume_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_PG_INSERT.format(figures='0, 0, 0, 0, COUNT(*)', where='')};
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_volume_conversations AFTER INSERT ON conversations
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_volume_conversations()
    """,
]

# What is stored already: live and erased rows, one shard.
_BACKFILL = """
    INSERT INTO report_volume_quarters ({columns})
    SELECT quarter, channel, 0, SUM(inbound), SUM(outbound), SUM(outbound_bot), SUM(outbound_agent),
           SUM(new_conversations)
    FROM (
        {messages}
        UNION ALL {erased_messages}
        UNION ALL SELECT {quarter_conversations} AS quarter, channel, 0, 0, 0, 0, 1 FROM conversations
        UNION ALL SELECT {quarter_erased_conversations} AS quarter, channel, 0, 0, 0, 0, 1
        FROM report_erased_conversations
    ) AS counted
    GROUP BY quarter, channel
"""
_BACKFILL_MESSAGES = """
    SELECT {quarter} AS quarter, channel,
           CASE WHEN direction = 'inbound' THEN 1 ELSE 0 END AS inbound,
           CASE WHEN direction = 'outbound' THEN 1 ELSE 0 END AS outbound,
           CASE WHEN direction = 'outbound' AND author_kind = 'bot' THEN 1 ELSE 0 END AS outbound_bot,
           CASE WHEN direction = 'outbound' AND author_kind = 'agent' THEN 1 ELSE 0 END AS outbound_agent,
           0 AS new_conversations
    FROM {table} WHERE kind = 'message'
"""


def _backfill(quarter: str) -> str:
    return _BACKFILL.format(
        columns=_COLUMNS,
        messages=_BACKFILL_MESSAGES.format(quarter=quarter.format(column='created_at'), table='messages'),
        erased_messages=_BACKFILL_MESSAGES.format(
            quarter=quarter.format(column='created_at'), table='report_erased_messages'
        ),
        quarter_conversations=quarter.format(column='created_at'),
        quarter_erased_conversations=quarter.format(column='created_at'),
    )


def upgrade() -> None:
    op.create_table(
        'report_volume_quarters',
        sa.Column('quarter', sa.BigInteger(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('shard', sa.SmallInteger(), nullable=False),
        sa.Column('inbound', sa.BigInteger(), nullable=False),
        sa.Column('outbound', sa.BigInteger(), nullable=False),
        sa.Column('outbound_bot', sa.BigInteger(), nullable=False),
        sa.Column('outbound_agent', sa.BigInteger(), nullable=False),
        sa.Column('new_conversations', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('quarter', 'channel', 'shard', name='pk_report_volume_quarters'),
    )
    postgresql = op.get_bind().dialect.name == 'postgresql'
    # Triggered, then filled, in one transaction (both backends' DDL is
    # transactional): creating a trigger locks its table against writers
    # until the commit, so the fill sees every row stored before and none
    # is counted twice or missed.
    for statement in _PG_TRIGGERS if postgresql else _SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(_backfill(_PG_QUARTER if postgresql else _SQLITE_QUARTER))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER report_volume_conversations ON conversations')
        op.execute('DROP FUNCTION report_volume_conversations()')
        op.execute('DROP TRIGGER report_volume_messages ON messages')
        op.execute('DROP FUNCTION report_volume_messages()')
    else:
        op.execute('DROP TRIGGER report_volume_conversation')
        op.execute('DROP TRIGGER report_volume_message')
    op.drop_table('report_volume_quarters')
