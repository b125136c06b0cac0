"""android agent protocol: sealed command secrets and per-unit location reporting

- commands.sealed_secret: a secret a command carries (an Android RESET_PASSWORD's new password),
  sealed; never in commands.params.
- org_units.android_location_reporting: whether the unit's Android tablets report their location
  with their inventory; NULL inherits from the parent unit.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 17:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without defaults: SQLite adds them in place (no table rebuild).
    op.add_column('commands', sa.Column('sealed_secret', sa.LargeBinary(), nullable=True))
    op.add_column('org_units', sa.Column('android_location_reporting', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.drop_column('android_location_reporting')
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.drop_column('sealed_secret')
