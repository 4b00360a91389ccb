"""NPS: an optional recommend question after a CSAT answer (issue #17)

``csat_surveys.kind``: ``csat`` (the 1-5 survey on resolve, every row so
far) or ``nps`` (0-10, "how likely are you to recommend us", asked when a
CSAT survey is answered). ``contacts.nps_asked_at``: when the contact was
last asked, so they are asked at most once per ``HUB_NPS_EVERY_DAYS``
(set by a conditional update in the transaction that asks).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 10:50:00
"""

from alembic import op
import sqlalchemy as sa

from hub.storage.schema import UTCDateTime


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('csat_surveys', sa.Column('kind', sa.String(8), nullable=False, server_default='csat'))
    op.add_column('contacts', sa.Column('nps_asked_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contacts') as batch:
        batch.drop_column('nps_asked_at')
    with op.batch_alter_table('csat_surveys') as batch:
        batch.drop_column('kind')
