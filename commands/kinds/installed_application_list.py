"""InstalledApplicationList: the apps on the device, into inventory (installs, removals, updates)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, PlatformEquivalent, Priority
from mdm.services.inventory.parsers.applications import parse_installed_applications

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class InstalledApplicationListParams(Schema):
    ManagedAppsOnly = fields.Boolean()
    Identifiers = fields.List(fields.String(validate=validate.Length(min=1, max=255)))


class InstalledApplicationList(CommandType):
    request_type = "InstalledApplicationList"
    schema = InstalledApplicationListParams
    description_ja = "インストール済みアプリ一覧の取得"
    description_en = "List installed apps"
    priority = Priority.LOW
    coalesce = True
    # The agent sends its whole inventory with every sync; this only asks for one now.
    android = PlatformEquivalent("REFRESH_INVENTORY")

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        parse_installed_applications(session, command, report)
