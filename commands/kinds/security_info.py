"""SecurityInfo: how the device is secured (passcode, encryption, FileVault), into inventory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commands.command_type import CommandType, NoParams, PlatformEquivalent, Priority
from mdm.services.inventory.parsers.security_info import parse_security_info

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class SecurityInfo(CommandType):
    request_type = "SecurityInfo"
    schema = NoParams
    description_ja = "セキュリティ情報の取得"
    description_en = "Collect security information"
    priority = Priority.LOW
    coalesce = True
    # The agent sends its whole inventory with every sync; this only asks for one now.
    android = PlatformEquivalent("REFRESH_INVENTORY")

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        parse_security_info(session, command, report)
