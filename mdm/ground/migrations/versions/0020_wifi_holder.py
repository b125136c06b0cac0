"""Wi-Fi certificates know the tablet they were issued to

A Wi-Fi (EAP-TLS) certificate is never bound to a device (it must not authenticate on the MDM
channel), so until now nothing tied it to the tablet that holds it: a lost or wiped tablet's Wi-Fi
certificate could not be revoked, and a device could ask for any number of them.
`holder_device_id` names the tablet; `key_alias` names the Android key pair (one network of its
policy) it was issued for, so a new one for the same alias replaces the old.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 20:50:00
"""

from alembic import op
import sqlalchemy as sa

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_certificates") as batch_op:
        batch_op.add_column(sa.Column("holder_device_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("key_alias", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_device_certificates_holder_device_id"), ["holder_device_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_device_certificates_holder_device_id_devices"), "devices", ["holder_device_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("device_certificates") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_device_certificates_holder_device_id_devices"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_device_certificates_holder_device_id"))
        batch_op.drop_column("key_alias")
        batch_op.drop_column("holder_device_id")
