"""EnableLostMode: the lock screen of a lost, supervised tablet, until it is found."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, validates_schema

from commands.command_type import CommandType, PlatformEquivalent, Priority, Sender
from commands.incidents.results import lock_answered
from commands.kinds.android import present
from commands.lock_screen import footnote_field, message_field, phone_field

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command


class EnableLostModeParams(Schema):
    Message = message_field()
    PhoneNumber = phone_field()
    Footnote = footnote_field()

    @validates_schema
    def _message_or_phone(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Apple: "A message or phone number must be provided."
        if not data.get("Message") and not data.get("PhoneNumber"):
            raise ValidationError("Message or PhoneNumber is required", field_name="Message")


def _android(params: dict[str, Any]) -> dict[str, Any]:
    return present(
        message=params.get("Message"), phone=params.get("PhoneNumber"), organization=params.get("Footnote")
    )


class EnableLostMode(CommandType):
    request_type = "EnableLostMode"
    schema = EnableLostModeParams
    description_ja = "紛失モードの有効化"
    description_en = "Enable lost mode"
    priority = Priority.URGENT
    # A lost tablet may come back online weeks later; lost mode must still be waiting.
    expires_after = None
    sent_by = Sender.HOTLINE
    requires_supervision = True
    android = PlatformEquivalent("START_LOST_MODE", _android)
    shows_lock_screen = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        lock_answered(session, command)
