"""audit events sealed after commit

audit_events.seq, prev_hash and hash may be NULL: on PostgreSQL an event is written unsealed in
its transaction and linked into the hash chain right after commit (issue 18: the chain lock was
held through every request's COMMIT). Existing rows are all sealed and keep their values.

SQLite rebuilds audit_events (batch mode); no table refers to it, so nothing cascades.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:05:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # Seal what is pending first (`hikeshi audit verify` does); unsealed rows cannot go back.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=False)
