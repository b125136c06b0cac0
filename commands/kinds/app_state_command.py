"""What InstallApplication and RemoveApplication share: high priority (a tablet waits for its
apps), and an answer that settles the device's app state the command was sent for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commands.command_type import CommandType, Priority
from mdm.services.apps.state import answered_state

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command, DeviceAppState


class AppStateCommand(CommandType):
    """Not a command itself (the catalog lists only its subclasses)."""

    priority = Priority.HIGH

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        state = answered_state(session, command)
        if state is not None:
            self.settle(state, command, report)

    def settle(self, state: DeviceAppState, command: Command, report: dict[str, Any]) -> None:
        """Record on the app's state what the device answered (it waits for nothing any more)."""
        raise NotImplementedError
