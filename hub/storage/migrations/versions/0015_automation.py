"""Automation rules and their runs (issue #17, ``hub.automation``)

``automation_rules``: when an event happens, if conditions hold, then actions;
``automation_runs``: a durable queue of the rules an event matched, unique per
rule and event (at most once), cascading with its conversation.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 11:00:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from hub.storage.schema import UTCDateTime


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'automation_rules',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('silent_hours', sa.Float(), nullable=True),
        sa.Column('conditions', JSON, nullable=False),
        sa.Column('unless', JSON, nullable=False),
        sa.Column('actions', JSON, nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('source', sa.String(length=8), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('name', name='uq_automation_rules_name'),
    )
    op.create_index('ix_automation_rules_event', 'automation_rules', ['event', 'enabled'])
    op.create_table(
        'automation_runs',
        sa.Column('id', BigId, primary_key=True),
        sa.Column(
            'rule_id',
            BigId,
            sa.ForeignKey('automation_rules.id', ondelete='CASCADE', name='fk_automation_runs_rule_id_automation_rules'),
            nullable=False,
        ),
        sa.Column(
            'conversation_id',
            BigId,
            sa.ForeignKey('conversations.id', ondelete='CASCADE', name='fk_automation_runs_conversation_id_conversations'),
            nullable=False,
        ),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('event_key', sa.String(length=200), nullable=False),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('lease_until', UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('rule_id', 'event_key', name='uq_automation_runs_rule_event'),
    )
    op.create_index('ix_automation_runs_due', 'automation_runs', ['status', 'next_attempt_at'])
    op.create_index('ix_automation_runs_conversation', 'automation_runs', ['conversation_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_automation_runs_conversation', table_name='automation_runs')
    op.drop_index('ix_automation_runs_due', table_name='automation_runs')
    op.drop_table('automation_runs')
    op.drop_index('ix_automation_rules_event', table_name='automation_rules')
    op.drop_table('automation_rules')
