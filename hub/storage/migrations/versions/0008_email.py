"""E-mail: attachments (content-addressed files), channel state (IMAP cursors), erased deliveries

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 04:20:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'attachments',
        sa.Column('id', sa.String(length=64), primary_key=True),
        sa.Column('content_type', sa.String(length=200), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'message_attachments',
        sa.Column('message_id', BigId, sa.ForeignKey('messages.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('attachment_id', sa.String(length=64), sa.ForeignKey('attachments.id'), primary_key=True),
    )
    op.create_index('ix_message_attachments_attachment', 'message_attachments', ['attachment_id'])
    op.create_table(
        'channel_state',
        sa.Column('channel', sa.String(length=32), primary_key=True),
        sa.Column('key', sa.String(length=200), primary_key=True),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'erased_deliveries',
        sa.Column('channel', sa.String(length=32), primary_key=True),
        sa.Column('external_key', sa.String(length=64), primary_key=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('erased_deliveries')
    op.drop_table('channel_state')
    op.drop_index('ix_message_attachments_attachment', table_name='message_attachments')
    op.drop_table('message_attachments')
    op.drop_table('attachments')
