"""kb phrasing suggestions: new phrasings of articles an admin accepts or rejects

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 17:21:31.010817
"""

from alembic import op
import sqlalchemy as sa
import hub.storage.schema


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kb_phrasing_suggestions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('collection', sa.String(length=100), nullable=False),
    sa.Column('article_id', sa.String(length=100), nullable=False),
    sa.Column('text', sa.String(length=300), nullable=False),
    sa.Column('normalised_text', sa.String(length=1000), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('votes', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('suggested_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', hub.storage.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_kb_phrasing_suggestions_conversation_id_conversations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['decided_by'], ['users.id'], name=op.f('fk_kb_phrasing_suggestions_decided_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['suggested_by'], ['users.id'], name=op.f('fk_kb_phrasing_suggestions_suggested_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_phrasing_suggestions')),
    sa.UniqueConstraint('collection', 'article_id', 'normalised_text', name='uq_kb_phrasing_suggestions_article_text')
    )
    with op.batch_alter_table('kb_phrasing_suggestions', schema=None) as batch_op:
        batch_op.create_index('ix_kb_phrasing_suggestions_conversation', ['conversation_id'], unique=False)
        batch_op.create_index('ix_kb_phrasing_suggestions_status', ['status', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('kb_phrasing_suggestions', schema=None) as batch_op:
        batch_op.drop_index('ix_kb_phrasing_suggestions_status')
        batch_op.drop_index('ix_kb_phrasing_suggestions_conversation')

    op.drop_table('kb_phrasing_suggestions')
