"""Reports: what erasures keep for them (report_erased_*), time-range indexes

Revision ID: 0011
Revises: 0008 (0009 and 0010 land on main later; chain this after 0010 then)
Create Date: 2026-11-29 08:00:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'report_erased_conversations',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('priority', sa.String(length=16), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', UTCDateTime(timezone=True)),
    )
    op.create_index('ix_report_erased_conversations_created', 'report_erased_conversations', ['created_at'])
    op.create_table(
        'report_erased_tickets',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('conversation_id', BigId, nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('priority', sa.String(length=16), nullable=False),
        sa.Column('assignee_id', BigId),
        sa.Column('team', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', UTCDateTime(timezone=True)),
        sa.Column('first_response_at', UTCDateTime(timezone=True)),
        sa.Column('first_response_due', UTCDateTime(timezone=True)),
        sa.Column('resolution_due', UTCDateTime(timezone=True)),
        sa.Column('first_response_breached_at', UTCDateTime(timezone=True)),
        sa.Column('resolution_breached_at', UTCDateTime(timezone=True)),
        sa.Column('sla_paused_at', UTCDateTime(timezone=True)),
    )
    op.create_index('ix_report_erased_tickets_created', 'report_erased_tickets', ['created_at'])
    op.create_index('ix_report_erased_tickets_conversation', 'report_erased_tickets', ['conversation_id'])
    op.create_table(
        'report_erased_messages',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('conversation_id', BigId, nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('direction', sa.String(length=16), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('author_kind', sa.String(length=16), nullable=False),
        sa.Column('author_id', BigId),
        sa.Column('decision', sa.String(length=32)),
        sa.Column('in_reply_to', BigId),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_report_erased_messages_created', 'report_erased_messages', ['created_at'])
    op.create_index('ix_report_erased_messages_conversation', 'report_erased_messages', ['conversation_id', 'id'])
    # A report of a week out of years of history reads that week, not the years.
    # Covering for volume and agent activity: the range is read without the rows.
    op.create_index(
        'ix_messages_created', 'messages', ['created_at', 'kind', 'direction', 'author_kind', 'channel', 'author_id']
    )
    op.create_index('ix_conversations_created', 'conversations', ['created_at'])
    op.create_index('ix_tickets_created', 'tickets', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_tickets_created', table_name='tickets')
    op.drop_index('ix_conversations_created', table_name='conversations')
    op.drop_index('ix_messages_created', table_name='messages')
    op.drop_table('report_erased_messages')
    op.drop_table('report_erased_tickets')
    op.drop_table('report_erased_conversations')
