"""OSUpdateStatus: download and install progress of the device's updates, kept for the console."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commands.command_type import CommandType, NoParams, Priority
from commands.os_update_answers import record_status
from mdm.ground.models import CommandStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class OSUpdateStatus(CommandType):
    request_type = "OSUpdateStatus"
    schema = NoParams
    description_ja = "OSアップデートの進行状況の取得"
    description_en = "Get OS update progress"
    priority = Priority.LOW
    coalesce = True
    requires_supervision = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        if command.status == CommandStatus.ACKNOWLEDGED:
            record_status(session, command, report)
