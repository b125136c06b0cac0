"""What devices reported about themselves: facts, installed apps, profiles, certificates, and the
history of what changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class DeviceFacts(Base):
    """The latest DeviceInformation and SecurityInfo answers of one device, normalized.

    Kept apart from `devices` so the device row stays the identity and protocol state; `raw_*`
    keep every key the device sent, including ones Hikeshi does not model yet.
    """

    __tablename__ = "device_facts"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    imei: Mapped[str | None] = mapped_column(String(32))
    meid: Mapped[str | None] = mapped_column(String(32))
    iccid: Mapped[str | None] = mapped_column(String(32))
    wifi_mac: Mapped[str | None] = mapped_column(String(32))
    bluetooth_mac: Mapped[str | None] = mapped_column(String(32))
    battery_level: Mapped[float | None]  # 0.0 – 1.0 as Apple reports it
    device_capacity_gb: Mapped[float | None]
    available_capacity_gb: Mapped[float | None]
    is_supervised: Mapped[bool | None]
    is_activation_lock_enabled: Mapped[bool | None]
    is_find_my_enabled: Mapped[bool | None]
    is_cloud_backup_enabled: Mapped[bool | None]
    is_lost_mode_enabled: Mapped[bool | None]
    is_roaming: Mapped[bool | None]
    cellular_technology: Mapped[int | None]
    time_zone: Mapped[str | None] = mapped_column(String(64))
    supplemental_build_version: Mapped[str | None] = mapped_column(String(32))
    passcode_present: Mapped[bool | None]
    passcode_compliant: Mapped[bool | None]
    passcode_compliant_with_profiles: Mapped[bool | None]
    hardware_encryption_caps: Mapped[int | None]
    # A Mac's SecurityInfo: FileVault, the application firewall, System Integrity Protection.
    filevault_enabled: Mapped[bool | None]
    filevault_personal_recovery_key: Mapped[bool | None]
    filevault_institutional_recovery_key: Mapped[bool | None]
    firewall_enabled: Mapped[bool | None]
    firewall_block_all_incoming: Mapped[bool | None]
    firewall_stealth_mode: Mapped[bool | None]
    sip_enabled: Mapped[bool | None]
    # Android agent facts (filled by mdm.doors.android): "YYYY-MM-DD" as Build.VERSION.SECURITY_PATCH.
    android_security_patch: Mapped[str | None] = mapped_column(String(10))
    android_device_owner: Mapped[bool | None]
    # Merged per key across answers: a DeviceInformation asking for a few keys keeps the others.
    raw_device_information: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # key → when the device last reported it (ISO 8601), so a merged value's age is known.
    device_information_reported_at: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    raw_security_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    device_information_at: Mapped[datetime | None]
    security_info_at: Mapped[datetime | None]
    applications_at: Mapped[datetime | None]
    # The SHA-256 of the last complete app list as stored (parsers.applications): an equal list
    # is not merged again. None: unknown (a partial list came since).
    applications_digest: Mapped[str | None] = mapped_column(String(64))
    profiles_at: Mapped[datetime | None]
    certificates_at: Mapped[datetime | None]


class InstalledApp(Base):
    __tablename__ = "installed_apps"
    __table_args__ = (
        UniqueConstraint("device_id", "identifier", name="uq_installed_apps_device_identifier"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    identifier: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    short_version: Mapped[str | None] = mapped_column(String(64))
    bundle_size: Mapped[int | None] = mapped_column(BigInteger)
    # InstalledApplicationList does not say; known only from a ManagedAppsOnly query (None: unknown).
    is_managed: Mapped[bool | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class InstalledProfile(Base):
    __tablename__ = "installed_profiles"
    __table_args__ = (
        UniqueConstraint("device_id", "identifier", name="uq_installed_profiles_device_identifier"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    identifier: Mapped[str] = mapped_column(String(255), index=True)
    payload_uuid: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    organization: Mapped[str | None] = mapped_column(String(255))
    payload_version: Mapped[int | None]
    is_managed: Mapped[bool | None]
    is_encrypted: Mapped[bool | None]
    removal_disallowed: Mapped[bool | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class InstalledCertificate(Base):
    __tablename__ = "installed_certificates"
    __table_args__ = (
        UniqueConstraint("device_id", "fingerprint_sha256", name="uq_installed_certificates_device_fp"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    common_name: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(String(512))
    issuer: Mapped[str | None] = mapped_column(String(512))
    not_after: Mapped[datetime | None] = mapped_column(index=True)
    is_identity: Mapped[bool] = mapped_column(default=False)
    first_seen_at: Mapped[datetime] = mapped_column(default=clock.now)


class InventoryChange(Base):
    """One thing that changed on a device (OS upgraded, app installed, battery low), with when."""

    __tablename__ = "inventory_changes"
    __table_args__ = (Index("ix_inventory_changes_device_time", "device_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(255), default="")
    old_value: Mapped[str | None] = mapped_column(String(255))
    new_value: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
