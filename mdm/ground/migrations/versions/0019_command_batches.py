"""command batches

Issue 23 item 4 (a profile assigned to 10,000 devices): the commands queued in bulk are audited by
one event naming their batch, not one event per command; `commands.batch` is how an auditor finds
every command (and so every device) of that event.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 17:00:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch_op:
        batch_op.add_column(sa.Column("batch", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_commands_batch", ["batch"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch_op:
        batch_op.drop_index("ix_commands_batch")
        batch_op.drop_column("batch")
