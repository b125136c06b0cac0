"""durable push intents, scheduler fencing

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 06:16:01.340808
"""
from alembic import op
import sqlalchemy as sa



revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('topic', 'subject_id', name=op.f('uq_outbox_topic'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_next_attempt_at'), ['next_attempt_at'], unique=False)

    op.create_table('scheduler_lease',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_lease'))
    )
    with op.batch_alter_table('commands', schema=None) as batch_op:
        # Existing commands have never been re-pushed.
        batch_op.add_column(sa.Column('repushes', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('repushed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('expired_reason', sa.String(length=255), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.drop_column('expired_reason')
        batch_op.drop_column('repushed_at')
        batch_op.drop_column('repushes')

    op.drop_table('scheduler_lease')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_next_attempt_at'))

    op.drop_table('outbox')
