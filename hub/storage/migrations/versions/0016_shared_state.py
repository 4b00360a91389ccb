"""State several hub instances share (issue #18)

``shared_versions``: one row per cache that every instance keeps in memory
(the routing rules, each knowledge-base collection's keyword index), bumped
with each change; an instance re-reads its cache when the number moved.
``leases``: one row per singleton loop (the SLA scheduler, the snooze
wake-ups, an IMAP mailbox): the instance holding an unexpired lease runs it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 10:55:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'shared_versions',
        sa.Column('name', sa.String(length=200), primary_key=True),
        sa.Column('version', sa.BigInteger(), nullable=False),
    )
    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=200), primary_key=True),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('lease_until', UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('leases')
    op.drop_table('shared_versions')
