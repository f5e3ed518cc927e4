"""credentials.deleted_at (soft delete) and the revisions table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds a nullable column in place, so batch mode rebuilds no table here
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.Float(), nullable=True))
    revisions = op.create_table(
        'revisions',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('value', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.bulk_insert(revisions, [{'name': 'credentials', 'value': 0}])


def downgrade() -> None:
    op.drop_table('revisions')
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')
