"""ProfileList: the configuration profiles on the device, into inventory, then compared with the
profiles it should have (profiles.enforcement, through the CommandContext: it queues installs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commands.command_type import NoParams
from commands.kinds.inventory_query import InventoryQuery
from mdm.ground.models import CommandStatus
from mdm.services.inventory.parsers.profiles import parse_profile_list

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class ProfileList(InventoryQuery):
    request_type = "ProfileList"
    schema = NoParams
    description_ja = "構成プロファイル一覧の取得"
    description_en = "List installed profiles"
    parser = parse_profile_list

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        super().on_result(session, command, report, context)
        items = report.get("ProfileList")
        if command.status == CommandStatus.ACKNOWLEDGED and isinstance(items, list) and context.profiles:
            context.profiles.profile_list_answered(session, command.device, items, context)
