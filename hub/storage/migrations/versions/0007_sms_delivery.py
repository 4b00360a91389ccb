"""SMS: delivery parts and reports, delivery errors on messages, opt-outs

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 04:00:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery_error', sa.String(length=300), nullable=True))
    op.create_table(
        'delivery_parts',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('message_id', BigId, sa.ForeignKey('messages.id', ondelete='CASCADE'), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('provider_id', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('error_code', sa.String(length=16), nullable=True),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('channel', 'provider_id', name='uq_delivery_parts_channel_provider_id'),
    )
    op.create_index('ix_delivery_parts_message', 'delivery_parts', ['message_id'])
    op.create_table(
        'opt_outs',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('contact_id', BigId, sa.ForeignKey('contacts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('channel', 'address', name='uq_opt_outs_channel_address'),
    )
    op.create_index('ix_opt_outs_contact', 'opt_outs', ['contact_id'])


def downgrade() -> None:
    op.drop_index('ix_opt_outs_contact', table_name='opt_outs')
    op.drop_table('opt_outs')
    op.drop_index('ix_delivery_parts_message', table_name='delivery_parts')
    op.drop_table('delivery_parts')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('delivery_error')
