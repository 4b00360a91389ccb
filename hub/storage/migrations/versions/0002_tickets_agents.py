"""tickets, agent profiles, routing rules, Slack jobs and handled Slack events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:34:09.112537
"""

from alembic import op
import sqlalchemy as sa
import hub.storage.schema
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('routing_rules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('handoff', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_rules'))
    )
    op.create_table('slack_events',
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('received_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_slack_events'))
    )
    with op.batch_alter_table('slack_events', schema=None) as batch_op:
        batch_op.create_index('ix_slack_events_received', ['received_at'], unique=False)

    op.create_table('slack_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('dedup_key', sa.String(length=100), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_jobs')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_slack_jobs_dedup_key'))
    )
    with op.batch_alter_table('slack_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_slack_jobs_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_slack_jobs_ticket', ['ticket_id', 'status'], unique=False)

    op.create_table('agent_profiles',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('skills', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('senior', sa.Boolean(), nullable=False),
    sa.Column('on_duty', sa.Boolean(), nullable=False),
    sa.Column('open_tickets', sa.Integer(), nullable=False),
    sa.Column('last_assigned_seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_agent_profiles_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_agent_profiles'))
    )
    with op.batch_alter_table('agent_profiles', schema=None) as batch_op:
        batch_op.create_index('ix_agent_profiles_team_duty', ['team', 'on_duty'], unique=False)

    op.create_table('tickets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('conversation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('open_conversation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('assignee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('kb_hits', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_response_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_response_due', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution_due', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sla_paused_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sla_paused_seconds', sa.Float(), nullable=False),
    sa.Column('first_response_breached_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution_breached_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('snoozed_until', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('slack_channel', sa.String(length=64), nullable=True),
    sa.Column('slack_ts', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_tickets_assignee_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_tickets_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_tickets_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('open_conversation_id', name=op.f('uq_tickets_open_conversation_id'))
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_conversation', ['conversation_id', 'id'], unique=False)
        batch_op.create_index('ix_tickets_slack', ['slack_channel', 'slack_ts'], unique=False)
        batch_op.create_index('ix_tickets_status', ['status', 'assignee_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_status')
        batch_op.drop_index('ix_tickets_slack')
        batch_op.drop_index('ix_tickets_conversation')

    op.drop_table('tickets')
    with op.batch_alter_table('agent_profiles', schema=None) as batch_op:
        batch_op.drop_index('ix_agent_profiles_team_duty')

    op.drop_table('agent_profiles')
    with op.batch_alter_table('slack_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_slack_jobs_ticket')
        batch_op.drop_index('ix_slack_jobs_due')

    op.drop_table('slack_jobs')
    with op.batch_alter_table('slack_events', schema=None) as batch_op:
        batch_op.drop_index('ix_slack_events_received')

    op.drop_table('slack_events')
    op.drop_table('routing_rules')
