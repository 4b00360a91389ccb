"""bot jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 19:42:15.380714
"""

from alembic import op
import sqlalchemy as sa
import hub.storage.schema


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('bot_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('conversation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_bot_jobs_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_bot_jobs_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bot_jobs')),
    sa.UniqueConstraint('message_id', name=op.f('uq_bot_jobs_message_id'))
    )
    with op.batch_alter_table('bot_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_bot_jobs_conversation', ['conversation_id', 'status'], unique=False)
        batch_op.create_index('ix_bot_jobs_due', ['status', 'next_attempt_at'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('bot_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_bot_jobs_due')
        batch_op.drop_index('ix_bot_jobs_conversation')

    op.drop_table('bot_jobs')

