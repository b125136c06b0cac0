"""AvailableOSUpdates: the updates the device is offered; the answer is kept (commands.os_update_answers)
and feeds the unit's "latest" target and the release dates the update policy counts from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commands.command_type import CommandType, NoParams, Priority
from commands.os_update_answers import record_available
from mdm.ground.models import CommandStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class AvailableOSUpdates(CommandType):
    request_type = "AvailableOSUpdates"
    schema = NoParams
    description_ja = "利用可能なOSアップデートの取得"
    description_en = "List available OS updates"
    priority = Priority.LOW
    coalesce = True
    requires_supervision = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        if command.status == CommandStatus.ACKNOWLEDGED:
            record_available(session, command, report)
