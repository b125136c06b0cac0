"""CertificateList: the certificates installed on the device, into inventory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields

from commands.command_type import CommandType, PlatformEquivalent, Priority
from mdm.services.inventory.parsers.certificates import parse_certificate_list

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class CertificateListParams(Schema):
    ManagedOnly = fields.Boolean()


class CertificateList(CommandType):
    request_type = "CertificateList"
    schema = CertificateListParams
    description_ja = "証明書一覧の取得"
    description_en = "List installed certificates"
    priority = Priority.LOW
    coalesce = True
    # Part of every full refresh (commands.inventory_refresh); the Apple parser finds no list in
    # the agent's acknowledgement and leaves everything as it is.
    android = PlatformEquivalent("REFRESH_INVENTORY")

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        parse_certificate_list(session, command, report)
