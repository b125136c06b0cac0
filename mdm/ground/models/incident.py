"""Loss and theft incidents: the hotline call, every step taken, locations, the wipe certificate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mdm.ground import clock
from mdm.ground.models.base import Base, JSONType
from mdm.ground.models.command import Command
from mdm.ground.models.device import Device


class IncidentStatus:
    OPEN = "open"
    LOCKED = "locked"
    WIPE_REQUESTED = "wipe_requested"
    # Approved (or break-glass): EraseDevice is queued but the device has not confirmed it.
    WIPE_APPROVED = "wipe_approved"
    WIPED = "wiped"
    RECOVERED = "recovered"
    CLOSED = "closed"

    ALL = (OPEN, LOCKED, WIPE_REQUESTED, WIPE_APPROVED, WIPED, RECOVERED, CLOSED)
    ACTIVE = (OPEN, LOCKED, WIPE_REQUESTED, WIPE_APPROVED)
    LABELS = {
        OPEN: ("受付", "Open"),
        LOCKED: ("ロック済み", "Locked"),
        WIPE_REQUESTED: ("消去申請中", "Wipe requested"),
        WIPE_APPROVED: ("消去承認済み・未実行", "Wipe approved, not yet confirmed"),
        WIPED: ("消去完了", "Wiped"),
        RECOVERED: ("回収済み", "Recovered"),
        CLOSED: ("終了", "Closed"),
    }


class LossKind:
    LOST = "lost"
    STOLEN = "stolen"

    ALL = (LOST, STOLEN)
    LABELS = {LOST: ("紛失", "Lost"), STOLEN: ("盗難", "Stolen")}


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    # The device's unit when the call came in (the device may be moved later).
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.OPEN, index=True)
    kind: Mapped[str] = mapped_column(String(8), default=LossKind.LOST)

    caller_name: Mapped[str] = mapped_column(String(100))
    caller_unit: Mapped[str] = mapped_column(String(100), default="")
    callback_number: Mapped[str] = mapped_column(String(32), default="")
    lost_at: Mapped[datetime | None]
    lost_place: Mapped[str] = mapped_column(String(255), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    operator: Mapped[str] = mapped_column(String(255))
    opened_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)

    locked_at: Mapped[datetime | None]
    lost_mode: Mapped[bool] = mapped_column(default=False)

    wipe_requested_by: Mapped[str | None] = mapped_column(String(255))
    wipe_requested_at: Mapped[datetime | None]
    wipe_request_reason: Mapped[str | None] = mapped_column(Text)
    wipe_approved_by: Mapped[str | None] = mapped_column(String(255))
    # The people behind the request and the approval (a console user or a token's owner): the
    # two-person rule compares these, never the names of tokens or sessions.
    wipe_requested_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    wipe_approved_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    wipe_approved_at: Mapped[datetime | None]
    break_glass: Mapped[bool] = mapped_column(default=False)
    break_glass_reason: Mapped[str | None] = mapped_column(Text)
    erase_command_id: Mapped[int | None] = mapped_column(ForeignKey("commands.id"))
    # Fingerprints of the device's identities when EraseDevice was queued: only an
    # acknowledgement signed by one of them earns a wipe certificate.
    wipe_identities: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    wiped_at: Mapped[datetime | None]

    auto_wipe_reminded_at: Mapped[datetime | None]
    recovered_by: Mapped[str | None] = mapped_column(String(255))
    recovered_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    # Latest known position (DeviceLocation); every fix is kept in incident_locations.
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    location_accuracy: Mapped[float | None]
    located_at: Mapped[datetime | None]

    device: Mapped[Device] = relationship()
    erase_command: Mapped[Command | None] = relationship()
    steps: Mapped[list[IncidentStep]] = relationship(back_populates="incident", order_by="IncidentStep.id")
    commands: Mapped[list[IncidentCommand]] = relationship(
        back_populates="incident", order_by="IncidentCommand.id"
    )
    locations: Mapped[list[IncidentLocation]] = relationship(order_by="IncidentLocation.id")


class IncidentStep(Base):
    """One thing a person (or the system) did on an incident, as shown on its timeline."""

    __tablename__ = "incident_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255))
    actor_role: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Break-glass and policy wipes: shown in red.
    flagged: Mapped[bool] = mapped_column(default=False)

    incident: Mapped[Incident] = relationship(back_populates="steps")


class IncidentCommand(Base):
    """A command sent for an incident; its delivery state is read from the commands table."""

    __tablename__ = "incident_commands"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    command_id: Mapped[int] = mapped_column(ForeignKey("commands.id"), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))

    incident: Mapped[Incident] = relationship(back_populates="commands")
    command: Mapped[Command] = relationship()


class IncidentLocation(Base):
    __tablename__ = "incident_locations"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    command_id: Mapped[int] = mapped_column(ForeignKey("commands.id"))
    latitude: Mapped[float]
    longitude: Mapped[float]
    horizontal_accuracy: Mapped[float | None]
    # When the device took the fix (its Timestamp), else when we received it.
    located_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=clock.now)


class IncidentPolicy(Base):
    """Per org unit: wipe automatically N hours after the call if not recovered (off by default)."""

    __tablename__ = "incident_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), unique=True)
    auto_wipe_after_hours: Mapped[int | None]
    remind_before_hours: Mapped[int] = mapped_column(default=2)
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class WipeCertificate(Base):
    """消去完了証明書: the exact JSON bytes and their detached CMS signature (DER).

    The content is fixed when the device acknowledges EraseDevice (Android: WIPE) and is signed in
    the same transaction with the settings of the CommandContext (commands.context), which hold
    the key that unseals the signer. Only where a caller has no settings is `signature` left
    empty, and the first caller holding them (export, console, the scheduler's
    sign_pending_certificates) signs it later, as a fallback.
    """

    __tablename__ = "wipe_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(default=clock.now)
    signed_at: Mapped[datetime | None]
