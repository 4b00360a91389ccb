"""CSAT: one satisfaction survey per resolve (issue #17)

``csat_surveys``: the survey sent when a ticket (or a conversation without
one) is resolved, on the conversation's channel, with its expiry and, once
answered, the rating (1-5), the optional comment and when. ``ticket_id`` is
unique so a ticket resolved twice never gets two surveys; both foreign keys
cascade, so an erasure (which deletes the contact's conversations) takes
the survey and its comment with it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 08:40:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'csat_surveys',
        sa.Column('id', BigId, primary_key=True),
        sa.Column(
            'conversation_id',
            BigId,
            sa.ForeignKey('conversations.id', ondelete='CASCADE', name='fk_csat_surveys_conversation_id_conversations'),
            nullable=False,
        ),
        sa.Column(
            'ticket_id',
            BigId,
            sa.ForeignKey('tickets.id', ondelete='CASCADE', name='fk_csat_surveys_ticket_id_tickets'),
            nullable=True,
        ),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('sent_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('rating', sa.SmallInteger(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('answered_at', UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('ticket_id', name='uq_csat_surveys_ticket_id'),
    )
    op.create_index('ix_csat_surveys_conversation_id', 'csat_surveys', ['conversation_id'])
    op.create_index('ix_csat_surveys_sent_at', 'csat_surveys', ['sent_at'])


def downgrade() -> None:
    op.drop_index('ix_csat_surveys_sent_at', table_name='csat_surveys')
    op.drop_index('ix_csat_surveys_conversation_id', table_name='csat_surveys')
    op.drop_table('csat_surveys')
