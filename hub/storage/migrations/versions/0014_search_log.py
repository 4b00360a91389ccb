"""The knowledge-base search log for the content-gaps report (issue #17)

``kb_search_log``: every portal search and every bot knowledge-base lookup
(query, confidence, best article, outcome), no personal data; a bot row names
its conversation and goes with it on erasure (``hub.kb.searchlog``).

Revision ID: 0014
Revises: 0012 (to be chained after the parallel branch's 0013)
Create Date: 2026-11-29 08:40:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0014'
# 0013 is being written on another branch at the same time: the lead chains it.
down_revision = '0013'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'kb_search_log',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('source', sa.String(length=8), nullable=False),
        sa.Column('collection', sa.String(length=100), nullable=False),
        sa.Column('query', sa.String(length=300), nullable=False),
        sa.Column('confidence', sa.Float(), nullable=True),
        sa.Column('article_id', sa.String(length=100), nullable=True),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('clicked_article_id', sa.String(length=100), nullable=True),
        sa.Column('search_token', sa.String(length=32), nullable=True),
        sa.Column(
            'conversation_id',
            BigId,
            sa.ForeignKey('conversations.id', ondelete='CASCADE', name='fk_kb_search_log_conversation_id_conversations'),
            nullable=True,
        ),
        sa.Column('message_id', BigId, nullable=True),
        sa.UniqueConstraint('conversation_id', 'message_id', name='uq_kb_search_log_conversation_message'),
    )
    op.create_index('ix_kb_search_log_created', 'kb_search_log', ['created_at'])
    op.create_index('ix_kb_search_log_token', 'kb_search_log', ['search_token'])


def downgrade() -> None:
    op.drop_index('ix_kb_search_log_token', table_name='kb_search_log')
    op.drop_index('ix_kb_search_log_created', table_name='kb_search_log')
    op.drop_table('kb_search_log')
