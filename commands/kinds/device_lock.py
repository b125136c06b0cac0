"""DeviceLock: lock the screen now, with a message and a callback number. Every device runs it
(lost mode needs a supervised one); the hotline's lock for unsupervised tablets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema

from commands.command_type import CommandType, PlatformEquivalent, Priority, Sender
from commands.incidents.results import lock_answered
from commands.kinds.android import present
from commands.lock_screen import message_field, phone_field

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class DeviceLockParams(Schema):
    Message = message_field()
    PhoneNumber = phone_field()


def _android(params: dict[str, Any]) -> dict[str, Any]:
    return present(message=params.get("Message"), phone=params.get("PhoneNumber"))


class DeviceLock(CommandType):
    request_type = "DeviceLock"
    schema = DeviceLockParams
    description_ja = "画面ロック"
    description_en = "Lock the device"
    priority = Priority.URGENT
    # It must still be waiting when a tablet that was offline for weeks comes back (DESIGN.md
    # invariant 2).
    expires_after = None
    sent_by = Sender.HOTLINE
    android = PlatformEquivalent("LOCK", _android)
    shows_lock_screen = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        lock_answered(session, command)
