"""The agents' console: passwords and TOTP on users, console sessions, recovery codes, one-time sign-in links

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 07:20:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_hash', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('password_changed_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('totp_enabled_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
    op.create_table(
        'console_sessions',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('session_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', BigId, sa.ForeignKey('users.id', ondelete='CASCADE', name='fk_console_sessions_user_id_users'), nullable=False),
        sa.Column('stage', sa.String(length=16), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('idle_expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('ip', sa.String(length=64), nullable=False),
        sa.Column('user_agent', sa.String(length=300), nullable=False),
        sa.UniqueConstraint('session_hash', name='uq_console_sessions_session_hash'),
    )
    op.create_index('ix_console_sessions_user', 'console_sessions', ['user_id', 'id'])
    op.create_index('ix_console_sessions_expires', 'console_sessions', ['expires_at'])
    op.create_table(
        'user_recovery_codes',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('user_id', BigId, sa.ForeignKey('users.id', ondelete='CASCADE', name='fk_user_recovery_codes_user_id_users'), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_at', UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('user_id', 'code_hash', name='uq_user_recovery_codes_user_code'),
    )
    op.create_table(
        'sign_in_links',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', BigId, sa.ForeignKey('users.id', ondelete='CASCADE', name='fk_sign_in_links_user_id_users'), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_at', UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('token_hash', name='uq_sign_in_links_token_hash'),
    )
    op.create_index('ix_sign_in_links_user', 'sign_in_links', ['user_id'])


def downgrade() -> None:
    op.drop_index('ix_sign_in_links_user', table_name='sign_in_links')
    op.drop_table('sign_in_links')
    op.drop_table('user_recovery_codes')
    op.drop_index('ix_console_sessions_expires', table_name='console_sessions')
    op.drop_index('ix_console_sessions_user', table_name='console_sessions')
    op.drop_table('console_sessions')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('password_changed_at')
        batch_op.drop_column('password_hash')
