"""AMAPI commands and notifications

Issue 22 part 1 (amapi-ops): the command sent through the Android Management API, fenced by the
Operation name stored with it (amapi_command_sends), and every Pub/Sub notification applied, kept
by its messageId so a redelivery is applied once (amapi_notifications).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 21:00:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "amapi_command_sends",
        sa.Column("command_id", sa.Integer(), sa.ForeignKey("commands.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("device_name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation_name", sa.String(length=255), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=512), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("operation_name", name="uq_amapi_command_sends_operation_name"),
    )
    op.create_index("ix_amapi_command_sends_device_name", "amapi_command_sends", ["device_name"])
    op.create_table(
        "amapi_notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("notification_type", sa.String(length=32), nullable=False),
        sa.Column("device_name", sa.String(length=255), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.UniqueConstraint("message_id", name="uq_amapi_notifications_message_id"),
    )
    op.create_index("ix_amapi_notifications_device_name", "amapi_notifications", ["device_name"])
    op.create_index("ix_amapi_notifications_received_at", "amapi_notifications", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_amapi_notifications_received_at", table_name="amapi_notifications")
    op.drop_index("ix_amapi_notifications_device_name", table_name="amapi_notifications")
    op.drop_table("amapi_notifications")
    op.drop_index("ix_amapi_command_sends_device_name", table_name="amapi_command_sends")
    op.drop_table("amapi_command_sends")
