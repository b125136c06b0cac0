"""Configuration profiles: the current spec, and every version that was ever saved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mdm.ground import clock
from mdm.ground.models.base import Base


class Profile(Base):
    """A named, versioned set of payloads. `spec` is the validated platform-neutral form
    (profiles.spec); Apple and Android renderings are produced from it."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Reverse-DNS; the Apple PayloadIdentifier. Never changes: another identifier is another profile.
    identifier: Mapped[str] = mapped_column(String(255), unique=True)
    name_ja: Mapped[str] = mapped_column(String(255))
    name_en: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(default=1)
    spec: Mapped[dict[str, Any]]
    # Payload key → PayloadUUID, kept across versions so devices update payloads in place.
    payload_uuids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    versions: Mapped[list[ProfileVersion]] = relationship(
        back_populates="profile", order_by="ProfileVersion.version"
    )

    def __repr__(self) -> str:
        return f"<Profile {self.id} {self.identifier} v{self.version}>"


class ProfileVersion(Base):
    """One saved version of a profile, as it was then (history; never changed afterwards)."""

    __tablename__ = "profile_versions"
    __table_args__ = (UniqueConstraint("profile_id", "version", name="uq_profile_versions_profile_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    version: Mapped[int]
    spec: Mapped[dict[str, Any]]
    payload_uuids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    profile: Mapped[Profile] = relationship(back_populates="versions")


class ProfileAssignment(Base):
    """A profile assigned to an org unit; every device in the unit or below it should have it."""

    __tablename__ = "profile_assignments"
    __table_args__ = (UniqueConstraint("profile_id", "org_unit_id", name="uq_profile_assignments_unit"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    assigned_by: Mapped[str] = mapped_column(String(255))
    assigned_at: Mapped[datetime] = mapped_column(default=clock.now)


class ProfileRendering(Base):
    """The signed Apple rendering of one profile version, made once and sent to every device.

    Signing needs the instance secret; device hooks (enrollment, ProfileList) have none, so they
    send the bytes stored here."""

    __tablename__ = "profile_renderings"
    __table_args__ = (
        UniqueConstraint("profile_id", "version", "platform", name="uq_profile_renderings_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    version: Mapped[int]
    platform: Mapped[str] = mapped_column(String(16))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class DeviceProfileState(Base):
    """Per device and profile identifier: what should be installed, what is, and what was sent.

    `profile_id` is None for a foreign profile: one the device reported that Hikeshi did not
    install (kept so it can be shown and reported, never removed automatically)."""

    __tablename__ = "device_profile_states"
    __table_args__ = (
        UniqueConstraint("device_id", "identifier", name="uq_device_profile_states_identifier"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    identifier: Mapped[str] = mapped_column(String(255))
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id"), index=True)
    # None: the profile is no longer wanted on this device (a removal may be pending).
    desired_version: Mapped[int | None]
    installed_version: Mapped[int | None]
    # The install or removal in flight, so the same one is never queued twice.
    pending_command_uuid: Mapped[str | None] = mapped_column(String(64))
    pending_action: Mapped[str | None] = mapped_column(String(16))
    pending_version: Mapped[int | None]
    last_verified_at: Mapped[datetime | None]
    # When the device acknowledged the install of `installed_version`: a ProfileList answered
    # before this moment describes the device as it was before the install.
    install_acknowledged_at: Mapped[datetime | None]
    # When the device first held it (an acknowledged install, or listed in a ProfileList): until
    # then a first install is in flight and the profile is not expected yet.
    first_confirmed_at: Mapped[datetime | None]
    # Why the device refused the last install (its ErrorChain), until one is acknowledged.
    last_error: Mapped[str | None] = mapped_column(String(255))
    foreign_display_name: Mapped[str | None] = mapped_column(String(255))
    foreign_first_seen_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    @property
    def is_foreign(self) -> bool:
        return self.profile_id is None
