"""What Hikeshi did through the Android Management API for devices of AMAPI-mode units: each
command sent (`devices.issueCommand` or, for a wipe, `devices.delete`) and each Pub/Sub
notification applied.

A send is written BEFORE the network call (its `claimed_at`) and its Operation name right after:
a process killed between the two leaves a claim without an operation, and the next sender looks
the operation up on the device (`operations.list`) before sending again, so a command is issued
once. A notification is kept by its Pub/Sub messageId, so a redelivered one is applied once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class AmapiSendKind:
    COMMAND = "command"  # devices.issueCommand → an Operation
    DELETE = "delete"  # devices.delete (the wipe): an empty answer


class AmapiCommandSend(Base):
    __tablename__ = "amapi_command_sends"

    command_id: Mapped[int] = mapped_column(ForeignKey("commands.id", ondelete="CASCADE"), primary_key=True)
    # The AMAPI device resource the command went to (enterprises/…/devices/…).
    device_name: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16), default=AmapiSendKind.COMMAND)
    # The fence: set and committed before the call; a claim without an operation is looked up.
    claimed_at: Mapped[datetime] = mapped_column(default=clock.now)
    operation_name: Mapped[str | None] = mapped_column(String(255), unique=True)
    issued_at: Mapped[datetime | None]
    # When the Operation was seen done (with or without an error), by a poll or a notification.
    done_at: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(512))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
    polled_at: Mapped[datetime | None]


class AmapiNotificationOutcome:
    APPLIED = "applied"
    DROPPED = "dropped"  # understood and deliberately not kept (the reason says why)
    REFUSED = "refused"  # not accepted (an enrollment with a token Hikeshi never made)
    UNKNOWN_DEVICE = "unknown_device"  # about a device Hikeshi does not manage


class AmapiNotification(Base):
    """One Pub/Sub message, applied once: its messageId is the key a redelivery meets."""

    __tablename__ = "amapi_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), unique=True)
    notification_type: Mapped[str] = mapped_column(String(32))
    device_name: Mapped[str | None] = mapped_column(String(255), index=True)
    published_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


def amapi_identity(device_name: str) -> str:
    """The identity an AMAPI device answers with, in the place of a certificate fingerprint
    (CommandResult.certificate_fingerprint, Incident.wipe_identities): the SHA-256 of its
    resource name. Google authenticates the device; Hikeshi knows it by that name only."""
    return hashlib.sha256(f"amapi-device:{device_name}".encode()).hexdigest()
