"""os updates: per-unit update policy, releases seen, per-device update and declarative status

- os_update_policies: a unit's own update policy (NULL org_unit_id: the fleet default; NULL
  fields inherit).
- os_releases: OS versions offered to some device, with when Hikeshi first saw them.
- device_os_updates: AvailableOSUpdates / OSUpdateStatus answers, the last ScheduleOSUpdate, the
  declaration set last served (DeclarationsToken) and the declarative status items last reported.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 17:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'os_update_policies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('org_unit_id', sa.Integer(), nullable=True),
        sa.Column('target', sa.String(length=16), nullable=True),
        sa.Column('days_after_release', sa.Integer(), nullable=True),
        sa.Column('deadline', sa.DateTime(timezone=True), nullable=True),
        sa.Column('install_time', sa.String(length=5), nullable=True),
        sa.Column('blocked_windows', _json(), nullable=True),
        sa.Column('android_mode', sa.String(length=16), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_by', sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ['org_unit_id'], ['org_units.id'], name=op.f('fk_os_update_policies_org_unit_id_org_units'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_os_update_policies')),
        sa.UniqueConstraint('org_unit_id', name=op.f('uq_os_update_policies_org_unit_id')),
    )
    op.create_table(
        'os_releases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('platform', sa.String(length=16), nullable=False),
        sa.Column('version', sa.String(length=32), nullable=False),
        sa.Column('build', sa.String(length=32), nullable=True),
        sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_os_releases')),
        sa.UniqueConstraint('platform', 'version', name=op.f('uq_os_releases_platform')),
    )
    op.create_table(
        'device_os_updates',
        sa.Column('device_id', sa.Integer(), nullable=False),
        sa.Column('available', _json(), nullable=True),
        sa.Column('available_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('update_status', _json(), nullable=True),
        sa.Column('update_status_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('scheduled_version', sa.String(length=32), nullable=True),
        sa.Column('scheduled_command_uuid', sa.String(length=64), nullable=True),
        sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('declarations_token', sa.String(length=64), nullable=True),
        sa.Column('declarations_token_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('declarations_fetched_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status_items', _json(), nullable=True),
        sa.Column('declaration_states', _json(), nullable=True),
        sa.Column('status_errors', _json(), nullable=True),
        sa.Column('status_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['device_id'], ['devices.id'], name=op.f('fk_device_os_updates_device_id_devices'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('device_id', name=op.f('pk_device_os_updates')),
    )


def downgrade() -> None:
    op.drop_table('device_os_updates')
    op.drop_table('os_releases')
    op.drop_table('os_update_policies')
