"""RelinquishOwnership: the Android agent gives the tablet back (RELINQUISH_OWNERSHIP).

Android only. The agent acknowledges, waits for the 200 of the sync carrying the
acknowledgement, removes what its policy set (restrictions, lock task, Wi-Fi networks and key
pairs, its own delegations) and calls DevicePolicyManager.clearDeviceOwnerApp: the tablet keeps
its data and is no longer managed (to erase it, wipe it through the hotline instead). Once the
acknowledgement is in, the device is unenrolled here and its agent locked out (403
device_not_enrolled); it comes back only by enrolling again with a QR code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commands.command_type import CommandType, NoParams, PlatformEquivalent, Priority
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import CommandStatus, EnrollmentState

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

RELINQUISHED = Actor("system:android-relinquish", "system")


class RelinquishOwnership(CommandType):
    request_type = "RelinquishOwnership"
    schema = NoParams
    description_ja = "管理の解除(Android、データは残る)"
    description_en = "Relinquish ownership (Android; data is kept)"
    priority = Priority.NORMAL
    apple = False
    android = PlatformEquivalent("RELINQUISH_OWNERSHIP")

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        if command.status != CommandStatus.ACKNOWLEDGED:
            return
        device = command.device
        device.enrollment_state = EnrollmentState.UNENROLLED
        device.unenrolled_at = clock.now()
        record_event(
            session,
            RELINQUISHED,
            "device.relinquished",
            "device",
            device.id,
            {"command_uuid": command.uuid, "requested_by": command.requested_by},
        )
