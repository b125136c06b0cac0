"""app list digest: an inventory whose app list is the last one's does not merge it again

Issue 18: a tablet reports every installed app at every inventory, almost always the same list;
each was read back row by row to find nothing changed.

- device_facts.applications_digest: the SHA-256 of the last complete list as stored (NULL:
  unknown, the next list is merged).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 23:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: SQLite adds it in place (no table rebuild).
    op.add_column("device_facts", sa.Column("applications_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_facts") as batch_op:
        batch_op.drop_column("applications_digest")
