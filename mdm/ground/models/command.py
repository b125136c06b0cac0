"""Commands queued for devices and every result they reported."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from mdm.ground import clock
from mdm.ground.models.base import Base, JSONType
from mdm.ground.models.device import Device
from mdm.ground.redaction import strip_raw_message


class CommandStatus:
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    ERROR = "error"
    NOT_NOW = "not_now"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    # The device answered, but Hikeshi could not accept the answer (see Command.failure_reason).
    FAILED = "failed"

    # Still waiting for the device.
    PENDING = (QUEUED, SENT, NOT_NOW)
    FINAL = (ACKNOWLEDGED, ERROR, CANCELLED, EXPIRED, FAILED)
    ALL = (QUEUED, SENT, ACKNOWLEDGED, ERROR, NOT_NOW, CANCELLED, EXPIRED, FAILED)


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_device_pending", "device_id", "status", "priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    request_type: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A secret the command carries (the new password of an Android RESET_PASSWORD), sealed with
    # mdm.ground.secretbox; kept out of `params`, so no list, API or audit event ever holds it.
    # Added to the command only when its device fetches it; dropped once the command is final.
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    priority: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default=CommandStatus.QUEUED)
    requested_by: Mapped[str] = mapped_column(String(255))

    queued_at: Mapped[datetime] = mapped_column(default=clock.now)
    pushed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    not_now_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    error_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    delivery_count: Mapped[int] = mapped_column(default=0)
    error_chain: Mapped[list[Any] | None] = mapped_column(JSONType, default=None)
    failed_at: Mapped[datetime | None]
    # Why a failed command's answer was not accepted, e.g. "answer too large (40123456 bytes)".
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    # Wake-ups asked again because the command still waits (mdm.ground.push.repush); capped.
    repushes: Mapped[int] = mapped_column(default=0)
    repushed_at: Mapped[datetime | None]
    # Why the server gave up on it (shown with the expired state): unknown stays unknown.
    expired_reason: Mapped[str | None] = mapped_column(String(255))
    # DeviceLock's MessageResult as the device reported it (Success, NoPasscodeSet,
    # DeviceInLostMode, Unknown); None while unanswered or when the answer carried none.
    message_result: Mapped[str | None] = mapped_column(String(32))
    # The bulk queueing this command was part of (a profile assigned to a unit): audited once, by
    # one event naming this batch, its size and a digest of its commands (commands.queue).
    batch: Mapped[str | None] = mapped_column(String(36), index=True)

    device: Mapped[Device] = relationship()
    results: Mapped[list[CommandResult]] = relationship(back_populates="command", order_by="CommandResult.id")


class CommandResult(Base):
    """One report (Acknowledged, Error, NotNow, …) as the device sent it."""

    __tablename__ = "command_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    command_id: Mapped[int] = mapped_column(ForeignKey("commands.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # SHA-256 of the identity certificate the report was signed with: evidence of who answered.
    certificate_fingerprint: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=clock.now)

    command: Mapped[Command] = relationship(back_populates="results")

    @validates("raw")
    def _without_secrets(self, _key: str, raw: bytes) -> bytes:
        return self.stored_raw(raw)

    @staticmethod
    def stored_raw(raw: bytes) -> bytes:
        """What is kept of a report: a result can carry a secret (an Activation Lock bypass code),
        never stored in clear. Every way a CommandResult is written goes through this."""
        return strip_raw_message(raw)


class ForeignCommandResult(Base):
    """A device's answer to a command Hikeshi never queued (InstallApplication,
    ManagedApplicationList, AvailableOSUpdates... sent by the MDM the fleet migrated from): kept
    exactly as received, like every other answer, and shown in the device's history."""

    __tablename__ = "foreign_command_results"
    __table_args__ = (Index("ix_foreign_command_results_device", "device_id", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    command_uuid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    # The answer's own keys (ManagedApplicationList, AvailableOSUpdates...): what it is about,
    # read from the answer, never guessed.
    answer_keys: Mapped[list[str]] = mapped_column(JSONType, default=list)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)

    @validates("raw")
    def _without_secrets(self, _key: str, raw: bytes) -> bytes:
        # Another MDM's answer can carry a secret just as well: never stored in clear.
        return strip_raw_message(raw)
