"""Apps: the catalog (App Store apps, in-house iOS apps, Android APKs), the files Hikeshi serves
for them, each org unit's required and blocked apps, and what every device has of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base, JSONType


class AppKind:
    APP_STORE = "app_store"  # by iTunesStoreID (adamId), installed with a device-based license
    ENTERPRISE = "enterprise"  # in-house .ipa, installed through a manifest Hikeshi serves
    ANDROID_APK = "android_apk"  # an APK Hikeshi serves to the agent (closed networks, no Play)

    ALL = (APP_STORE, ENTERPRISE, ANDROID_APK)
    PLATFORM = {APP_STORE: "apple", ENTERPRISE: "apple", ANDROID_APK: "android"}


class App(Base):
    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("platform", "identifier", name="uq_apps_platform_identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    platform: Mapped[str] = mapped_column(String(16))
    # Bundle identifier (Apple) or package name (Android).
    identifier: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    itunes_store_id: Mapped[int | None] = mapped_column(BigInteger)
    # The version the catalog offers (store version, CFBundleShortVersionString, versionName): a
    # change is pushed as an update to every device that has the app as required.
    version: Mapped[str | None] = mapped_column(String(64))
    version_code: Mapped[int | None] = mapped_column(BigInteger)  # Android versionCode
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class AppPackage(Base):
    """The file of an in-house app or APK, as uploaded, with its hashes. Served to devices at an
    unguessable URL (`download_token`) that an administrator can rotate."""

    __tablename__ = "app_packages"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Android: SHA-256 of the APK's signing certificate (DER), lowercase hex.
    signing_cert_sha256: Mapped[str | None] = mapped_column(String(64))
    # Which signature scheme the certificate was read from ("v2", "v3", "v1").
    signing_scheme: Mapped[str | None] = mapped_column(String(8))
    download_token: Mapped[str] = mapped_column(String(64), unique=True)
    # Loaded only when the file is served: listing the catalog never reads the bytes.
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    uploaded_at: Mapped[datetime] = mapped_column(default=clock.now)


class AppRuleAction:
    REQUIRED = "required"
    BLOCKED = "blocked"
    ALL = (REQUIRED, BLOCKED)


class UnitAppRule(Base):
    """An app an org unit requires (from the catalog) or blocks (any identifier, in the catalog or
    not); every device in the unit or below it follows it, the nearest unit's rule winning."""

    __tablename__ = "unit_app_rules"
    __table_args__ = (
        UniqueConstraint("org_unit_id", "platform", "identifier", name="uq_unit_app_rules_unit_app"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    identifier: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    app_id: Mapped[int | None] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    # Managed app configuration (Apple `Configuration`, Android `managedConfiguration`); string
    # values may name unit and device fields ({unit_code}, {serial_number}...).
    configuration: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class BlockAction:
    REPORT = "report"  # detect and notify
    REMOVE = "remove"  # detect, notify and remove
    ALL = (REPORT, REMOVE)
    DEFAULT = REPORT


class UnitAppSettings(Base):
    """Per org unit: what finding a blocked app does. No row (or NULL) inherits from above."""

    __tablename__ = "unit_app_settings"

    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    block_action: Mapped[str | None] = mapped_column(String(16))
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class DeviceAppState(Base):
    """Per device and app identifier: what it should be, what the device last said, what was sent."""

    __tablename__ = "device_app_states"
    __table_args__ = (UniqueConstraint("device_id", "identifier", name="uq_device_app_states_identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    identifier: Mapped[str] = mapped_column(String(255))
    app_id: Mapped[int | None] = mapped_column(ForeignKey("apps.id", ondelete="SET NULL"), index=True)
    # "required", "blocked" or None (no longer wanted: tracked until it is gone).
    desired: Mapped[str | None] = mapped_column(String(16))
    # ManagedApplicationList's Status (Managed, ManagedButUninstalled, Installing, Failed...), as
    # the device reported it; None: the device did not list it as managed.
    managed_status: Mapped[str | None] = mapped_column(String(32))
    management_flags: Mapped[int | None]
    has_configuration: Mapped[bool | None]
    external_version_id: Mapped[int | None] = mapped_column(BigInteger)
    reported_at: Mapped[datetime | None]
    # Installed per the last app inventory (InstalledApplicationList or the agent's), with version.
    installed: Mapped[bool | None]
    installed_version: Mapped[str | None] = mapped_column(String(64))
    # The catalog version last sent (an install or update), to push the next store version.
    sent_version: Mapped[str | None] = mapped_column(String(64))
    pending_command_uuid: Mapped[str | None] = mapped_column(String(64))
    pending_action: Mapped[str | None] = mapped_column(String(16))
    # Installs (or removals) sent since the device last had it right; bounded with backoff.
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    # Why it is not as it should be, for people: "license not available", the device's error...
    reason: Mapped[str | None] = mapped_column(String(255))
    license_state: Mapped[str | None] = mapped_column(String(16))
    blocked_reported_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
