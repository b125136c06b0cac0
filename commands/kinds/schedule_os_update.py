"""ScheduleOSUpdate: download or install an OS update on a supervised device that cannot take the
declarative enforcement (before iOS 17). The OS update service sends DownloadOnly ahead of the
due moment and InstallASAP at it (mdm.services.osupdates.enforcement)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, Priority
from commands.os_update_answers import record_scheduled

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

INSTALL_ACTIONS = (
    "Default",
    "DownloadOnly",
    "InstallASAP",
    "NotifyOnly",
    "InstallLater",
    "InstallForceRestart",
)


class UpdateItem(Schema):
    ProductKey = fields.String(validate=validate.Length(min=1, max=255))
    ProductVersion = fields.String(validate=validate.Regexp(r"^\d{1,3}\.\d{1,3}(\.\d{1,3})?\Z"))
    InstallAction = fields.String(required=True, validate=validate.OneOf(INSTALL_ACTIONS))
    MaxUserDeferrals = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    Priority = fields.String(validate=validate.OneOf(("Low", "High")))


class ScheduleOSUpdateParams(Schema):
    Updates = fields.List(fields.Nested(UpdateItem), required=True, validate=validate.Length(min=1, max=10))


class ScheduleOSUpdate(CommandType):
    request_type = "ScheduleOSUpdate"
    schema = ScheduleOSUpdateParams
    description_ja = "OSアップデートの実行予約"
    description_en = "Schedule an OS update"
    priority = Priority.NORMAL
    requires_supervision = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        record_scheduled(session, command, report)
