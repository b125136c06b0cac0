"""ManagedApplicationList: the apps Hikeshi manages on the device and their state, into each
device's app states (mdm.services.apps.state); app enforcement follows the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.kinds.inventory_query import InventoryQuery
from mdm.ground.models import CommandStatus
from mdm.services.apps.state import apply_managed_application_list

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

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


class ManagedApplicationList(InventoryQuery):
    request_type = "ManagedApplicationList"
    schema = ManagedApplicationListParams
    description_ja = "管理対象アプリの状態の取得"
    description_en = "List managed apps and their state"
    parser = parse_managed_application_list
    # Apple only: the agent reports its apps with every sync.
    android = None
