"""Android provisioning settings stored by the console (issue 19 item 8)

- android_provisioning: one row (id 1) with what the device-owner QR code installs: the agent
  package, admin component, APK download URL and signing-certificate checksum, the Wi-Fi joined
  during setup (password sealed), locale and time zone. A NULL column falls back to the
  server's Android setting from the environment, so nothing changes for an installation configured by
  environment until someone saves a value in the console.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('android_provisioning',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_package', sa.String(length=255), nullable=True),
    sa.Column('agent_component', sa.String(length=255), nullable=True),
    sa.Column('agent_download_url', sa.String(length=1024), nullable=True),
    sa.Column('agent_signature_checksum', sa.String(length=64), nullable=True),
    sa.Column('wifi_ssid', sa.String(length=64), nullable=True),
    sa.Column('wifi_security', sa.String(length=8), nullable=True),
    sa.Column('wifi_password_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('time_zone', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_android_provisioning'))
    )


def downgrade() -> None:
    op.drop_table('android_provisioning')
