"""Report rollups: the volume report's counts per quarter-hour and channel,
the bot report's facts per conversation

``report_volume_quarters`` and ``report_bot_conversations``, kept by
triggers in the transaction of every insert into ``messages``,
``conversations`` and ``tickets`` (``hub.reports.rollups``), and filled here
from what is already stored (live and erased rows).

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29 10:40:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

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
    """
    CREATE TRIGGER report_bot_conversation AFTER INSERT ON conversations
    BEGIN
        INSERT INTO report_bot_conversations
            (conversation_id, channel, created_at, bot_replied, agent_replied, answered, handed_off)
        VALUES (NEW.id, NEW.channel, NEW.created_at, 0, 0, 0, 0);
    END
    """,
    """
    CREATE TRIGGER report_bot_reply AFTER INSERT ON messages
    WHEN NEW.kind = 'message' AND NEW.direction = 'outbound' AND NEW.author_kind IN ('bot', 'agent')
    BEGIN
        UPDATE report_bot_conversations SET
            bot_replied = MAX(bot_replied, NEW.author_kind = 'bot'),
            agent_replied = MAX(agent_replied, NEW.author_kind = 'agent'),
            answered = MAX(
                answered,
                NEW.author_kind = 'bot' AND IFNULL(json_extract(NEW.meta, '$.decision.action') = 'answer', 0)
            )
        WHERE conversation_id = NEW.conversation_id
          AND (bot_replied = 0 OR answered = 0 OR agent_replied = 0);
    END
    """,
    """
    CREATE TRIGGER report_bot_turn AFTER INSERT ON messages
    WHEN NEW.kind = 'message' AND NEW.direction = 'outbound' AND NEW.author_kind = 'bot'
    BEGIN
        INSERT INTO report_bot_turns (message_id, channel, created_at, decision, turn)
        VALUES (
            NEW.id, NEW.channel, NEW.created_at, json_extract(NEW.meta, '$.decision.action'),
            COALESCE(json_extract(NEW.meta, '$.in_reply_to'), -NEW.id)
        );
    END
    """,
    """
    CREATE TRIGGER report_bot_ticket AFTER INSERT ON tickets
    BEGIN
        UPDATE report_bot_conversations SET handed_off = 1
        WHERE conversation_id = NEW.conversation_id AND handed_off = 0;
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
    """
    CREATE FUNCTION report_bot_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO report_bot_conversations
            (conversation_id, channel, created_at, bot_replied, agent_replied, answered, handed_off)
        SELECT id, channel, created_at, 0, 0, 0, 0 FROM inserted;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_bot_conversations AFTER INSERT ON conversations
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_bot_conversations()
    """,
    """
    CREATE FUNCTION report_bot_replies() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE report_bot_conversations AS f SET
            bot_replied = GREATEST(f.bot_replied, n.bot),
            agent_replied = GREATEST(f.agent_replied, n.agent),
            answered = GREATEST(f.answered, n.answered)
        FROM (
            SELECT conversation_id,
                   MAX(CASE WHEN author_kind = 'bot' THEN 1 ELSE 0 END) AS bot,
                   MAX(CASE WHEN author_kind = 'agent' THEN 1 ELSE 0 END) AS agent,
                   MAX(CASE WHEN author_kind = 'bot' AND meta #>> '{decision,action}' = 'answer' THEN 1 ELSE 0 END)
                       AS answered
            FROM inserted
            WHERE kind = 'message' AND direction = 'outbound' AND author_kind IN ('bot', 'agent')
            GROUP BY conversation_id
        ) AS n
        WHERE f.conversation_id = n.conversation_id
          AND (f.bot_replied < n.bot OR f.agent_replied < n.agent OR f.answered < n.answered);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_bot_replies AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_bot_replies()
    """,
    """
    CREATE FUNCTION report_bot_turns() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO report_bot_turns (message_id, channel, created_at, decision, turn)
        SELECT id, channel, created_at, meta #>> '{decision,action}', COALESCE(CAST(meta ->> 'in_reply_to' AS INTEGER), -id)
        FROM inserted
        WHERE kind = 'message' AND direction = 'outbound' AND author_kind = 'bot';
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_bot_turns AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_bot_turns()
    """,
    """
    CREATE FUNCTION report_bot_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE report_bot_conversations AS f SET handed_off = 1
        FROM (SELECT DISTINCT conversation_id FROM inserted) AS n
        WHERE f.conversation_id = n.conversation_id AND f.handed_off = 0;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER report_bot_tickets AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION report_bot_tickets()
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


# The bot's facts of every conversation stored already, live or erased.
_BACKFILL_BOT = """
    INSERT INTO report_bot_conversations
        (conversation_id, channel, created_at, bot_replied, agent_replied, answered, handed_off)
    SELECT CASE WHEN c.erased = 0 THEN c.id END, c.channel, c.created_at,
           COALESCE(f.bot, 0), COALESCE(f.agent, 0), COALESCE(f.answered, 0),
           CASE WHEN h.conversation_id IS NULL THEN 0 ELSE 1 END
    FROM (
        SELECT 0 AS erased, id, channel, created_at FROM conversations
        UNION ALL SELECT 1, id, channel, created_at FROM report_erased_conversations
    ) AS c
    LEFT JOIN (
        SELECT erased, conversation_id,
               MAX(CASE WHEN author_kind = 'bot' THEN 1 ELSE 0 END) AS bot,
               MAX(CASE WHEN author_kind = 'agent' THEN 1 ELSE 0 END) AS agent,
               MAX(CASE WHEN author_kind = 'bot' AND decision = 'answer' THEN 1 ELSE 0 END) AS answered
        FROM (
            SELECT 0 AS erased, conversation_id, author_kind, {decision} AS decision FROM messages
            WHERE kind = 'message' AND direction = 'outbound' AND author_kind IN ('bot', 'agent')
            UNION ALL SELECT 1, conversation_id, author_kind, decision FROM report_erased_messages
            WHERE kind = 'message' AND direction = 'outbound' AND author_kind IN ('bot', 'agent')
        ) AS replies
        GROUP BY erased, conversation_id
    ) AS f ON f.erased = c.erased AND f.conversation_id = c.id
    LEFT JOIN (
        SELECT 0 AS erased, conversation_id FROM tickets
        UNION SELECT 1, conversation_id FROM report_erased_tickets
    ) AS h ON h.erased = c.erased AND h.conversation_id = c.id
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
    op.create_table(
        'report_bot_conversations',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('conversation_id', BigId),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('bot_replied', sa.SmallInteger(), nullable=False),
        sa.Column('agent_replied', sa.SmallInteger(), nullable=False),
        sa.Column('answered', sa.SmallInteger(), nullable=False),
        sa.Column('handed_off', sa.SmallInteger(), nullable=False),
    )
    op.create_index('ix_report_bot_conversations_created', 'report_bot_conversations', ['created_at'])
    op.create_table(
        'report_bot_turns',
        sa.Column(
            'message_id',
            BigId,
            sa.ForeignKey('messages.id', ondelete='CASCADE', name='fk_report_bot_turns_message_id_messages'),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('decision', sa.Text()),
        sa.Column('turn', sa.BigInteger(), nullable=False),
    )
    op.create_index(
        'ix_report_bot_turns_created', 'report_bot_turns', ['created_at', 'decision', 'turn', 'channel']
    )
    op.create_index(
        'ix_report_bot_conversations_conversation', 'report_bot_conversations', ['conversation_id'], unique=True
    )
    postgresql = op.get_bind().dialect.name == 'postgresql'
    # Triggered, then filled, in one transaction (both backends' DDL is
    # transactional): creating a trigger locks its table against writers
    # until the commit, so the fill sees every row stored before and none
    # is counted twice or missed.
    for statement in _PG_TRIGGERS if postgresql else _SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(_backfill(_PG_QUARTER if postgresql else _SQLITE_QUARTER))
    decision = "meta #>> '{decision,action}'" if postgresql else "json_extract(meta, '$.decision.action')"
    op.execute(_BACKFILL_BOT.format(decision=decision))
    in_reply_to = "CAST(meta ->> 'in_reply_to' AS INTEGER)" if postgresql else "json_extract(meta, '$.in_reply_to')"
    op.execute(
        'INSERT INTO report_bot_turns (message_id, channel, created_at, decision, turn)'
        f' SELECT id, channel, created_at, {decision}, COALESCE({in_reply_to}, -id) FROM messages'
        " WHERE kind = 'message' AND direction = 'outbound' AND author_kind = 'bot'"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for trigger, table in (
            ('report_bot_tickets', 'tickets'),
            ('report_bot_turns', 'messages'),
            ('report_bot_replies', 'messages'),
            ('report_bot_conversations', 'conversations'),
        ):
            op.execute(f'DROP TRIGGER {trigger} ON {table}')
            op.execute(f'DROP FUNCTION {trigger}()')
        op.execute('DROP TRIGGER report_volume_conversations ON conversations')
        op.execute('DROP FUNCTION report_volume_conversations()')
        op.execute('DROP TRIGGER report_volume_messages ON messages')
        op.execute('DROP FUNCTION report_volume_messages()')
    else:
        for trigger in ('report_bot_ticket', 'report_bot_turn', 'report_bot_reply', 'report_bot_conversation'):
            op.execute(f'DROP TRIGGER {trigger}')
        op.execute('DROP TRIGGER report_volume_conversation')
        op.execute('DROP TRIGGER report_volume_message')
    op.drop_index('ix_report_bot_turns_created', table_name='report_bot_turns')
    op.drop_table('report_bot_turns')
    op.drop_index('ix_report_bot_conversations_conversation', table_name='report_bot_conversations')
    op.drop_index('ix_report_bot_conversations_created', table_name='report_bot_conversations')
    op.drop_table('report_bot_conversations')
    op.drop_table('report_volume_quarters')
