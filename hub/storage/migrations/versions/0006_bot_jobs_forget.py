"""bot_jobs: "forget" jobs empty an erased conversation's Rasa tracker

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 01:32:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('bot_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sender', sa.String(length=64), nullable=True))
        batch_op.alter_column(
            'conversation_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True
        )


def downgrade() -> None:
    op.execute("DELETE FROM bot_jobs WHERE conversation_id IS NULL")
    with op.batch_alter_table('bot_jobs', schema=None) as batch_op:
        batch_op.alter_column(
            'conversation_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False
        )
        batch_op.drop_column('sender')
