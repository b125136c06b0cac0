"""OS updates: each unit's update policy, what each device said about its updates (the MDM
commands' answers and its declarative status reports), and the releases the fleet has seen.

Kept apart from `devices`: one concept, read by the OS update service (mdm.services.osupdates).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground.models.base import Base, JSONType


class OsUpdatePolicy(Base):
    """A unit's own update policy; org_unit_id NULL is the fleet default. Every NULL field inherits
    from the unit above (mdm.services.osupdates.policy)."""

    __tablename__ = "os_update_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", ondelete="CASCADE"), unique=True
    )
    # "17.5.1", or "latest": the newest version the fleet's devices were offered.
    target: Mapped[str | None] = mapped_column(String(16))
    days_after_release: Mapped[int | None] = mapped_column(Integer)
    deadline: Mapped[datetime | None]
    # Local "HH:MM" at which a forced install is scheduled on its due day.
    install_time: Mapped[str | None] = mapped_column(String(5))
    # [{"start": "07:30", "end": "09:00"}, ...] local times when no update may install (shift change).
    blocked_windows: Mapped[list[dict[str, str]] | None] = mapped_column(JSONType)
    android_mode: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime | None]
    updated_by: Mapped[str | None] = mapped_column(String(255))


class OsRelease(Base):
    """An OS version some device was offered, and when Hikeshi first saw it offered: the release
    date the "within N days of release" rule counts from (Apple's answers carry no release date)."""

    __tablename__ = "os_releases"
    __table_args__ = (UniqueConstraint("platform", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32))
    build: Mapped[str | None] = mapped_column(String(32))
    first_seen_at: Mapped[datetime]


class DeviceOsUpdate(Base):
    """What one device said about its OS updates, and the declaration set it was last served."""

    __tablename__ = "device_os_updates"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    # AvailableOSUpdates answer, as its items' known keys (ProductKey, Version, Build, IsCritical...).
    available: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    available_at: Mapped[datetime | None]
    # OSUpdateStatus answer items.
    update_status: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    update_status_at: Mapped[datetime | None]
    # The last ScheduleOSUpdate Hikeshi queued for the device.
    scheduled_version: Mapped[str | None] = mapped_column(String(32))
    scheduled_command_uuid: Mapped[str | None] = mapped_column(String(64))
    scheduled_at: Mapped[datetime | None]
    # Declarative management: the DeclarationsToken of the set last served, and since when.
    declarations_token: Mapped[str | None] = mapped_column(String(64))
    declarations_token_at: Mapped[datetime | None]
    declarations_fetched_at: Mapped[datetime | None]
    # The status channel: every status item last reported, by its dotted name, merged across
    # (partial) reports; the declarations' states; the errors the device listed.
    status_items: Mapped[dict[str, Any] | None]
    declaration_states: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    status_errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    status_at: Mapped[datetime | None]
