"""fleet search indexes

Issue 23 (100,000 devices): the hotline finds a tablet by asset tag, serial or user without
reading every row, and the console's device list opens on an index.

- lower(asset_tag / serial_number / assigned_user / udid): exact matches, as the hotline asks
  first (case-insensitive, so the index is on lower()).
- PostgreSQL with pg_trgm: a trigram GIN index on lower() of each searched column, so
  `lower(col) LIKE '%…%'` uses an index. The extension is created when the role may; without it
  the substring search still works, by a scan, and a warning says why.
- (last_seen_at DESC NULLS LAST, id): the device list's default order, most recently seen first.

The indexes are on expressions, so they live here and not in the models (autogenerate skips
expression indexes on both databases).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 13:15:00
"""

import logging

from alembic import op
import sqlalchemy as sa

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

EXACT = ("asset_tag", "serial_number", "assigned_user", "udid")
SUBSTRING = (
    "udid",
    "serial_number",
    "device_name",
    "model_name",
    "product_name",
    "asset_tag",
    "assigned_user",
)


def _trigram_available(bind: sa.Connection) -> bool:
    """pg_trgm installed, or installed now if this role may (in a savepoint: a refusal must not
    abort the migration's transaction)."""
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first():
        return True
    if not bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first():
        log.warning("pg_trgm is not available on this server: device search will scan")
        return False
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning("cannot create extension pg_trgm (%s): device search will scan", exc.orig)
        return False
    savepoint.commit()
    return True


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    for column in EXACT:
        op.execute(f"CREATE INDEX ix_devices_lower_{column} ON devices (lower({column}))")
    if postgres:
        op.execute("CREATE INDEX ix_devices_last_seen_order ON devices (last_seen_at DESC NULLS LAST, id)")
        if _trigram_available(bind):
            for column in SUBSTRING:
                op.execute(
                    f"CREATE INDEX ix_devices_trgm_{column} ON devices USING gin (lower({column}) gin_trgm_ops)"
                )
    else:
        # SQLite sorts NULL first ascending, so last descending: no NULLS LAST needed.
        op.execute("CREATE INDEX ix_devices_last_seen_order ON devices (last_seen_at DESC, id)")


def downgrade() -> None:
    for column in SUBSTRING:
        op.execute(f"DROP INDEX IF EXISTS ix_devices_trgm_{column}")
    op.execute("DROP INDEX IF EXISTS ix_devices_last_seen_order")
    for column in EXACT:
        op.execute(f"DROP INDEX IF EXISTS ix_devices_lower_{column}")
