"""DeviceLocation: where a tablet in lost mode is; the fix lands on its incident."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commands.command_type import CommandType, NoParams, PlatformEquivalent, Priority, Sender
from commands.incidents.results import location_answered

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class DeviceLocation(CommandType):
    request_type = "DeviceLocation"
    schema = NoParams
    description_ja = "位置情報の取得(紛失モード中)"
    description_en = "Locate the device (in lost mode)"
    priority = Priority.HIGH
    expires_after = None  # a lost-mode command: waits for the lost tablet like lost mode itself
    sent_by = Sender.HOTLINE
    requires_supervision = True
    android = PlatformEquivalent("LOCATE")

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        location_answered(session, command, report)
