"""SLA warnings before the breach, and canned replies (issue #17)

``tickets.first_response_warn_at`` / ``resolution_warn_at``: when
``HUB_SLA_WARN_AT`` of each window will have elapsed, kept with the
deadlines; ``sla_warnings``: one row per ticket, target and deadline warned
about (the unique key is the claim); ``canned_replies``: agents' reply
templates.

The open tickets of before this migration have no warning moments until
their deadlines next move (a priority change, a pause that ends): they are
still escalated on breach as before.

Revision ID: 0012
Revises: 0010 (to be chained after the reports branch's 0011)
Create Date: 2026-11-29 08:10:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0012'
# The reports branch's 0011 is not on this branch yet: the lead chains it.
down_revision = '0011'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_response_warn_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolution_warn_at', UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        'sla_warnings',
        sa.Column('id', BigId, primary_key=True),
        sa.Column(
            'ticket_id',
            BigId,
            sa.ForeignKey('tickets.id', ondelete='CASCADE', name='fk_sla_warnings_ticket_id_tickets'),
            nullable=False,
        ),
        sa.Column('target', sa.String(length=16), nullable=False),
        sa.Column('due_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('warned_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            'assignee_id',
            BigId,
            sa.ForeignKey('users.id', ondelete='SET NULL', name='fk_sla_warnings_assignee_id_users'),
            nullable=True,
        ),
        sa.UniqueConstraint('ticket_id', 'target', 'due_at', name='uq_sla_warnings_ticket_target_due'),
    )
    op.create_table(
        'canned_replies',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('team', sa.String(length=64), nullable=True),
        sa.Column(
            'created_by',
            BigId,
            sa.ForeignKey('users.id', ondelete='SET NULL', name='fk_canned_replies_created_by_users'),
            nullable=True,
        ),
        sa.Column(
            'updated_by',
            BigId,
            sa.ForeignKey('users.id', ondelete='SET NULL', name='fk_canned_replies_updated_by_users'),
            nullable=True,
        ),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('name', name='uq_canned_replies_name'),
    )


def downgrade() -> None:
    op.drop_table('canned_replies')
    op.drop_table('sla_warnings')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('resolution_warn_at')
        batch_op.drop_column('first_response_warn_at')
