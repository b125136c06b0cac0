"""activation lock: escrowed bypass codes and the per-unit setting

- device_activation_locks: per device, the sealed Activation Lock bypass code and the
  ActivationLockAllowedWhileSupervised value the device last acknowledged.
- org_units.activation_lock_allowed: allow (true) or disallow (false) Activation Lock on the unit's
  supervised tablets; NULL inherits from the parent unit.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 13:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'device_activation_locks',
        sa.Column('device_id', sa.Integer(), nullable=False),
        sa.Column('bypass_code_sealed', sa.LargeBinary(), nullable=True),
        sa.Column('bypass_code_escrowed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('bypass_code_command_uuid', sa.String(length=64), nullable=True),
        sa.Column('bypass_code_unavailable_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('allowed_acknowledged', sa.Boolean(), nullable=True),
        sa.Column('allowed_acknowledged_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['device_id'], ['devices.id'], name=op.f('fk_device_activation_locks_device_id_devices'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('device_id', name=op.f('pk_device_activation_locks')),
    )
    # A nullable column without a default: SQLite adds it in place (no table rebuild, no cascade).
    op.add_column('org_units', sa.Column('activation_lock_allowed', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.drop_column('activation_lock_allowed')
    op.drop_table('device_activation_locks')
