"""EraseDevice: erase all content and settings. Only two people (or a recorded break glass) send
it; its acknowledgement earns the wipe certificate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields

from commands.command_type import CommandType, PlatformEquivalent, Priority, Sender
from commands.incidents.results import erase_answered
from commands.kinds.android import wipe_flags

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class EraseDeviceParams(Schema):
    # Only keys of Apple's device.erase.yaml: RevokeVPPLicenses is not an EraseDevice key and is
    # refused as an unknown field.
    PreserveDataPlan = fields.Boolean()
    DisallowProximitySetup = fields.Boolean()


class EraseDevice(CommandType):
    request_type = "EraseDevice"
    schema = EraseDeviceParams
    description_ja = "データ消去(ワイプ)"
    description_en = "Erase all content and settings"
    priority = Priority.ERASE
    # A wipe of a lost tablet must reach it whenever it comes back online.
    expires_after = None
    sent_by = Sender.TWO_PERSON
    android = PlatformEquivalent("WIPE", lambda params: {"flags": wipe_flags(params)})

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        erase_answered(session, command, context.settings)
