"""RemoveProfile: remove a configuration profile by its identifier."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, Priority
from commands.kinds.install_profile import profile_state_for_command
from mdm.ground import clock
from mdm.ground.models import CommandStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)+$")


class RemoveProfileParams(Schema):
    Identifier = fields.String(
        required=True,
        validate=[
            validate.Length(min=3, max=255),
            validate.Regexp(_IDENTIFIER, error="must be a reverse-DNS profile identifier"),
        ],
    )


class RemoveProfile(CommandType):
    request_type = "RemoveProfile"
    schema = RemoveProfileParams
    description_ja = "構成プロファイルの削除"
    description_en = "Remove a configuration profile"
    priority = Priority.HIGH

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        state = profile_state_for_command(session, command)
        if state is None:
            return
        state.pending_command_uuid = state.pending_action = state.pending_version = None
        state.updated_at = clock.now()
        if state.desired_version is None:
            # Removed, or the device could not remove it (already gone): either way it is no longer
            # tracked; a ProfileList that still shows it brings it back as an undesired profile.
            session.delete(state)
        elif command.status == CommandStatus.ACKNOWLEDGED:
            state.installed_version = None
