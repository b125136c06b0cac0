"""Apps and Books (volume purchase) location token (issue 21 item 1)

- vpp_tokens: the uploaded location token, sealed, with its organisation, location and expiry.
- vpp_assets: the apps the location owns licenses for, with their counts.
- vpp_assignments: licenses assigned (or being assigned) to device serial numbers.
- vpp_events: the service's asynchronous associate / disassociate events, polled to completion.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vpp_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('org_name', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('location_name', sa.String(length=255), nullable=True),
    sa.Column('location_uid', sa.String(length=64), nullable=True),
    sa.Column('country_code', sa.String(length=8), nullable=True),
    sa.Column('replaced_location', sa.String(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploaded_by', sa.String(length=255), nullable=False),
    sa.Column('last_sync_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=512), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vpp_tokens'))
    )
    with op.batch_alter_table('vpp_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vpp_tokens_expires_at'), ['expires_at'], unique=False)

    op.create_table('vpp_assets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('adam_id', sa.String(length=32), nullable=False),
    sa.Column('pricing_param', sa.String(length=16), nullable=False),
    sa.Column('product_type', sa.String(length=32), nullable=True),
    sa.Column('device_assignable', sa.Boolean(), nullable=False),
    sa.Column('revocable', sa.Boolean(), nullable=False),
    sa.Column('supported_platforms', sa.JSON(), nullable=False),
    sa.Column('total_count', sa.Integer(), nullable=False),
    sa.Column('assigned_count', sa.Integer(), nullable=False),
    sa.Column('available_count', sa.Integer(), nullable=False),
    sa.Column('retired_count', sa.Integer(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vpp_assets')),
    sa.UniqueConstraint('adam_id', 'pricing_param', name='uq_vpp_assets_adam_pricing')
    )
    with op.batch_alter_table('vpp_assets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vpp_assets_adam_id'), ['adam_id'], unique=False)

    op.create_table('vpp_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('adam_id', sa.String(length=32), nullable=False),
    sa.Column('pricing_param', sa.String(length=16), nullable=False),
    sa.Column('serial_number', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=512), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vpp_assignments')),
    sa.UniqueConstraint('adam_id', 'serial_number', name='uq_vpp_assignments_adam_serial')
    )
    with op.batch_alter_table('vpp_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vpp_assignments_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vpp_assignments_serial_number'), ['serial_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_vpp_assignments_state'), ['state'], unique=False)

    op.create_table('vpp_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('num_requested', sa.Integer(), nullable=True),
    sa.Column('num_completed', sa.Integer(), nullable=True),
    sa.Column('failures', sa.JSON(), nullable=False),
    sa.Column('polls', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vpp_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_vpp_events_event_id'))
    )
    with op.batch_alter_table('vpp_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vpp_events_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('vpp_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vpp_events_status'))
    op.drop_table('vpp_events')
    with op.batch_alter_table('vpp_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vpp_assignments_state'))
        batch_op.drop_index(batch_op.f('ix_vpp_assignments_serial_number'))
        batch_op.drop_index(batch_op.f('ix_vpp_assignments_event_id'))
    op.drop_table('vpp_assignments')
    with op.batch_alter_table('vpp_assets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vpp_assets_adam_id'))
    op.drop_table('vpp_assets')
    with op.batch_alter_table('vpp_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vpp_tokens_expires_at'))
    op.drop_table('vpp_tokens')
