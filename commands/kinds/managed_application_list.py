"""ManagedApplicationList: the apps Hikeshi manages on the device and their state, into each
device's app states (mdm.services.apps.state); app enforcement follows the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, Priority
from mdm.ground.models import CommandStatus
from mdm.services.apps.state import apply_managed_application_list

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class ManagedApplicationListParams(Schema):
    Identifiers = fields.List(
        fields.String(validate=validate.Length(min=1, max=255)), validate=validate.Length(max=500)
    )


def parse_managed_application_list(session: Session, command: Command, report: dict[str, Any]) -> None:
    if command.status != CommandStatus.ACKNOWLEDGED:
        return
    answer = report.get("ManagedApplicationList")
    if not isinstance(answer, dict):
        return  # the Android agent's refresh, or a partial answer without the list: nothing learnt
    asked = (command.params or {}).get("Identifiers") or None
    apply_managed_application_list(session, command.device, answer, asked_for=asked)


class ManagedApplicationList(CommandType):
    """An inventory-style query (low priority, one waiting at most), Apple only: the Android agent
    reports its apps with every sync."""

    request_type = "ManagedApplicationList"
    schema = ManagedApplicationListParams
    description_ja = "管理対象アプリの状態の取得"
    description_en = "List managed apps and their state"
    priority = Priority.LOW
    coalesce = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        parse_managed_application_list(session, command, report)
