"""agent policy generation: an unchanged Android policy is answered without being rebuilt

Issue 18: every Android sync read the unit chain, the profiles along it, the OS update policy and
the app rules, and rendered the policy, only to find the version the agent already had.

- policy_generation: one row, raised by triggers at every write to the tables a policy is built
  from, whoever writes them (the ORM, a bulk statement, psql).
- devices.agent_policy_version / agent_policy_basis: the version last built for the device and
  the generation and device fields it was built from; agent_reports_location: that policy's
  location setting (a sync with an inventory needs it, and need not read the unit chain for it).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 23:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

# Frozen here as it was when this revision was written: a migration does not follow the code.
WATCHED = (
    "app_packages",
    "apps",
    "certificate_authorities",
    "org_units",
    "os_update_policies",
    "profile_assignments",
    "profiles",
    "unit_app_rules",
)
BUMP = "UPDATE policy_generation SET value = value + 1 WHERE id = 1"
FUNCTION = "hikeshi_raise_policy_generation"


def upgrade() -> None:
    op.create_table(
        "policy_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_generation")),
    )
    op.execute("INSERT INTO policy_generation (id, value) VALUES (1, 1)")
    # Nullable columns without defaults: SQLite adds them in place (no table rebuild).
    op.add_column("devices", sa.Column("agent_policy_version", sa.String(64), nullable=True))
    op.add_column("devices", sa.Column("agent_policy_basis", sa.String(96), nullable=True))
    op.add_column("devices", sa.Column("agent_reports_location", sa.Boolean(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in WATCHED:
            # Once a statement: a bulk change raises it once, and TRUNCATE is a change too.
            op.execute(
                f"CREATE TRIGGER {table}_policy_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
            )
        return
    for table in WATCHED:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_policy_generation_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER {table}_policy_generation ON {table}")
        op.execute(f"DROP FUNCTION {FUNCTION}()")
    else:
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_policy_generation_{event}")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("agent_reports_location")
        batch_op.drop_column("agent_policy_basis")
        batch_op.drop_column("agent_policy_version")
    op.drop_table("policy_generation")
