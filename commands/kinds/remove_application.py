"""RemoveApplication: remove a managed app (one the MDM installed or took over) by bundle id.

The answer has no keys of its own: an acknowledgement means the device removed it (or it was not
there); an error names why (an app the user installed is not managed and cannot be removed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.kinds.app_state_command import AppStateCommand
from commands.kinds.install_application import error_text
from mdm.ground.models import CommandStatus

if TYPE_CHECKING:
    from mdm.ground.models import Command, DeviceAppState


class RemoveApplicationParams(Schema):
    Identifier = fields.String(required=True, validate=validate.Length(min=1, max=255))


class RemoveApplication(AppStateCommand):
    request_type = "RemoveApplication"
    schema = RemoveApplicationParams
    description_ja = "管理対象アプリの削除"
    description_en = "Remove a managed app"

    def settle(self, state: DeviceAppState, command: Command, report: dict[str, Any]) -> None:
        if command.status == CommandStatus.ACKNOWLEDGED:
            state.managed_status = None
            state.reason = "removed by Hikeshi" if state.desired == "blocked" else None
        else:
            state.reason = f"removal refused by the device: {error_text(report)}"
