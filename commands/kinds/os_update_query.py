"""What the two OS update queries (AvailableOSUpdates, OSUpdateStatus) share: low priority, one
waiting per device at most, supervised devices only, and an acknowledged answer kept by one
recorder of commands.os_update_answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from commands.command_type import CommandType, NoParams, Priority
from mdm.ground.models import CommandStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

Recorder = Callable[["Session", "Command", dict[str, Any]], None]


class OsUpdateQuery(CommandType):
    """Not a command itself (the catalog lists only its subclasses)."""

    schema = NoParams
    priority = Priority.LOW
    coalesce = True
    requires_supervision = True
    recorder: ClassVar[Recorder]

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        if command.status == CommandStatus.ACKNOWLEDGED:
            type(self).recorder(session, command, report)
