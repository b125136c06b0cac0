"""What every inventory query shares: low priority, one waiting per device at most, the Android
agent's full inventory refresh as its equivalent, and an answer read by one inventory parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from commands.command_type import CommandType, PlatformEquivalent, Priority

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

Parser = Callable[["Session", "Command", dict[str, Any]], None]


class InventoryQuery(CommandType):
    """Not a command itself (the catalog lists only its subclasses)."""

    priority = Priority.LOW
    coalesce = True
    # The agent sends its whole inventory with every sync; a refresh only asks for one now. The
    # Apple parser finds no list of its kind in the agent's acknowledgement and changes nothing.
    android = PlatformEquivalent("REFRESH_INVENTORY")
    parser: ClassVar[Parser]

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        type(self).parser(session, command, report)
