"""Outgoing webhooks (issue #18)

``webhook_endpoints`` (integrators' URLs, secrets, event types) and
``webhook_deliveries`` (a durable queue of ``hub.jobs``: one row per endpoint
and event, written with the event's cause; ``hub.webhooks``).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 10:40:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from hub.storage.schema import UTCDateTime


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('secret', sa.String(length=200), nullable=False),
        sa.Column('previous_secret', sa.String(length=200), nullable=True),
        sa.Column('previous_secret_until', UTCDateTime(timezone=True), nullable=True),
        sa.Column('events', JSON, nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('description', sa.String(length=500), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', BigId, primary_key=True),
        sa.Column(
            'endpoint_id',
            BigId,
            sa.ForeignKey(
                'webhook_endpoints.id', ondelete='CASCADE', name='fk_webhook_deliveries_endpoint_id_webhook_endpoints'
            ),
            nullable=False,
        ),
        sa.Column('event', sa.String(length=64), nullable=False),
        sa.Column('idempotency_key', sa.String(length=100), nullable=False),
        sa.Column('ordering_key', sa.String(length=100), nullable=True),
        sa.Column(
            'contact_id',
            BigId,
            sa.ForeignKey('contacts.id', ondelete='CASCADE', name='fk_webhook_deliveries_contact_id_contacts'),
            nullable=True,
        ),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('lease_until', UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('response_status', sa.Integer(), nullable=True),
        sa.Column('delivered_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('idempotency_key', name='uq_webhook_deliveries_idempotency_key'),
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['status', 'next_attempt_at'])
    op.create_index('ix_webhook_deliveries_endpoint', 'webhook_deliveries', ['endpoint_id', 'id'])
    op.create_index('ix_webhook_deliveries_ordering', 'webhook_deliveries', ['ordering_key', 'status'])
    op.create_index('ix_webhook_deliveries_contact', 'webhook_deliveries', ['contact_id'])


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_contact', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_ordering', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_endpoint', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_endpoints')
