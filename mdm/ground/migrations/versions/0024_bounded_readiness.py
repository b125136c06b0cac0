"""readiness pages bounded by the missing tablets they show

Issue 23: a page of units carried every missing tablet of each unit (100 units of 1,000 tablets:
11.3 MB, 0.75 s). The published row now keeps every missing tablet in `missing_devices` (read for
one unit only) and their number in `missing_total`; `details.missing` keeps the first 20, worst
first, which is what a page of units shows.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 14:20:00
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# Frozen here as it was when this revision was written: a migration does not follow the code.
SHOWN = 20
REASON_ORDER = (
    "stolen",
    "lost",
    "retired",
    "not_enrolled",
    "spare_not_checked_in",
    "spare_profiles_pending",
    "noncompliant",
    "not_seen",
    "battery_low",
)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _worst_first(entry: dict[str, Any]) -> tuple[int, str, int]:
    reasons = entry.get("reasons") or [{}]
    code = reasons[0].get("code")
    rank = REASON_ORDER.index(code) if code in REASON_ORDER else len(REASON_ORDER)
    return rank, str(entry.get("name") or ""), int(entry.get("device_id") or 0)


def upgrade() -> None:
    with op.batch_alter_table("unit_readiness") as batch_op:
        batch_op.add_column(sa.Column("missing_devices", JSON, nullable=True))
        batch_op.add_column(sa.Column("missing_total", sa.Integer(), nullable=False, server_default="0"))
    table = sa.table(
        "unit_readiness",
        sa.column("org_unit_id", sa.Integer()),
        sa.column("details", JSON),
        sa.column("missing_devices", JSON),
        sa.column("missing_total", sa.Integer()),
    )
    bind = op.get_bind()
    # Row by row in Python: worst first is the order of the reasons' codes, not a column's.
    for unit_id, details in bind.execute(sa.select(table.c.org_unit_id, table.c.details)).all():
        details = dict(details or {})
        missing = sorted(details.get("missing") or [], key=_worst_first)
        details["missing"] = missing[:SHOWN]
        bind.execute(
            table.update()
            .where(table.c.org_unit_id == unit_id)
            .values(details=details, missing_devices=missing, missing_total=len(missing))
        )
    with op.batch_alter_table("unit_readiness") as batch_op:
        batch_op.alter_column("missing_devices", existing_type=JSON, nullable=False)


def downgrade() -> None:
    table = sa.table(
        "unit_readiness",
        sa.column("org_unit_id", sa.Integer()),
        sa.column("details", JSON),
        sa.column("missing_devices", JSON),
    )
    bind = op.get_bind()
    for unit_id, details, missing in bind.execute(
        sa.select(table.c.org_unit_id, table.c.details, table.c.missing_devices)
    ).all():
        bind.execute(
            table.update()
            .where(table.c.org_unit_id == unit_id)
            .values(details={**(details or {}), "missing": missing or []})
        )
    with op.batch_alter_table("unit_readiness") as batch_op:
        batch_op.drop_column("missing_total")
        batch_op.drop_column("missing_devices")
