"""android management api: the enterprise, unit mode, policies, enrollment tokens, devices

Issue 22 part 1 (AMAPI mode):
- amapi_enterprise: the one Google enterprise this server manages, its sealed service-account key,
  signup state and Pub/Sub topic / subscription.
- org_units.android_mode: 'agent' | 'amapi' per unit; NULL inherits from the parent unit.
- amapi_policies: the AMAPI Policy of each unit, with the content hash last patched and the unit's
  EAP-TLS Wi-Fi identity (PKCS#12 from the built-in CA, sealed).
- amapi_enrollment_tokens: enrollment tokens per unit (value and QR payload sealed).
- amapi_devices: the AMAPI Device behind each enrolled Android device.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 20:45:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "amapi_enterprise",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_name", sa.String(length=128), nullable=True),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("project_id", sa.String(length=128), nullable=True),
        sa.Column("service_account_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("service_account_email", sa.String(length=255), nullable=True),
        sa.Column("service_account_key_id", sa.String(length=64), nullable=True),
        sa.Column("signup_url_name", sa.String(length=255), nullable=True),
        sa.Column("signup_url", sa.String(length=2048), nullable=True),
        sa.Column("signup_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pubsub_topic", sa.String(length=255), nullable=True),
        sa.Column("pubsub_subscription", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amapi_enterprise")),
        sa.UniqueConstraint("enterprise_name", name=op.f("uq_amapi_enterprise_enterprise_name")),
    )
    op.create_table(
        "amapi_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("policy_name", sa.String(length=255), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("patched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wifi_identity_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("wifi_identity_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name=op.f("fk_amapi_policies_org_unit_id_org_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amapi_policies")),
        sa.UniqueConstraint("org_unit_id", name=op.f("uq_amapi_policies_org_unit_id")),
        sa.UniqueConstraint("policy_name", name=op.f("uq_amapi_policies_policy_name")),
    )
    op.create_table(
        "amapi_enrollment_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("token_name", sa.String(length=255), nullable=False),
        sa.Column("policy_name", sa.String(length=255), nullable=False),
        sa.Column("value_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("qr_code_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_unit_id"],
            ["org_units.id"],
            name=op.f("fk_amapi_enrollment_tokens_org_unit_id_org_units"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amapi_enrollment_tokens")),
        sa.UniqueConstraint("token_name", name=op.f("uq_amapi_enrollment_tokens_token_name")),
    )
    with op.batch_alter_table("amapi_enrollment_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_amapi_enrollment_tokens_org_unit_id"), ["org_unit_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_amapi_enrollment_tokens_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "amapi_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("amapi_name", sa.String(length=255), nullable=False),
        sa.Column("enterprise_name", sa.String(length=128), nullable=False),
        sa.Column("policy_name", sa.String(length=255), nullable=True),
        sa.Column("applied_policy_version", sa.Integer(), nullable=True),
        sa.Column("last_status_report_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_report", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_amapi_devices_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amapi_devices")),
        sa.UniqueConstraint("amapi_name", name=op.f("uq_amapi_devices_amapi_name")),
        sa.UniqueConstraint("device_id", name=op.f("uq_amapi_devices_device_id")),
    )
    with op.batch_alter_table("amapi_devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_amapi_devices_enterprise_name"), ["enterprise_name"], unique=False)
    # Nullable without a default: SQLite adds it in place (no table rebuild).
    op.add_column("org_units", sa.Column("android_mode", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("org_units", schema=None) as batch_op:
        batch_op.drop_column("android_mode")
    with op.batch_alter_table("amapi_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_amapi_devices_enterprise_name"))
    op.drop_table("amapi_devices")
    with op.batch_alter_table("amapi_enrollment_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_amapi_enrollment_tokens_expires_at"))
        batch_op.drop_index(batch_op.f("ix_amapi_enrollment_tokens_org_unit_id"))
    op.drop_table("amapi_enrollment_tokens")
    op.drop_table("amapi_policies")
    op.drop_table("amapi_enterprise")
