"""Lost mode, location, passcode clearing and shutdown: what the hotline sends to a lost tablet."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from commands.command_type import CommandType, DeliveryContext, Priority, register
from mdm.ground.models import Device
from mdm.ground.secretbox import unseal

UNLOCK_TOKEN_PURPOSE = "unlock-token"  # noqa: S105  (a secretbox purpose label, not a secret)


class EnableLostModeParams(Schema):
    Message = fields.String(validate=validate.Length(min=1, max=500))
    PhoneNumber = fields.String(validate=validate.Regexp(r"^[0-9+\-() ]{1,32}$"))
    Footnote = fields.String(validate=validate.Length(min=1, max=200))

    @validates_schema
    def _message_or_phone(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Apple: "A message or phone number must be provided."
        if not data.get("Message") and not data.get("PhoneNumber"):
            raise ValidationError("Message or PhoneNumber is required", field_name="Message")


class NoParams(Schema):
    """A command without parameters; anything given is an error naming the key."""


NO_UNLOCK_TOKEN = (
    "この端末からはUnlockToken(パスコード解除に必要な鍵)が届いていないため、パスコードを解除できません。"
    "端末を回収して手元で解除するか、必要なら消去(ワイプ)を申請してください。",
    "The passcode cannot be cleared: this device never sent an UnlockToken (the key Apple requires to"
    " clear it). Recover the tablet and reset it in hand, or request a wipe if needed.",
)


def _without_unlock_token(device: Device) -> tuple[str, str] | None:
    # Apple's passcode.clear.yaml marks UnlockToken required: without it the device answers an
    # error, so the command is refused before it is queued, with a reason the operator can use.
    return NO_UNLOCK_TOKEN if device.unlock_token_encrypted is None else None


def _with_unlock_token(keys: dict[str, Any], context: DeliveryContext) -> dict[str, Any]:
    # Unsealed only here, at delivery: the token never sits in commands.params or the audit log.
    sealed = context.device.unlock_token_encrypted
    if sealed is None:
        # Queued before the token was lost (refused at queue time otherwise): the device answers
        # an Error that is recorded on the command.
        return keys
    return {**keys, "UnlockToken": unseal(context.secret_key, UNLOCK_TOKEN_PURPOSE, sealed)}


register(
    CommandType(
        "EnableLostMode",
        EnableLostModeParams,
        "紛失モードの有効化",
        "Enable lost mode",
        priority=Priority.URGENT,
        # A lost tablet may come back online weeks later; lost mode must still be waiting.
        expires_after=None,
        requires_supervision=True,
    )
)
register(
    CommandType(
        "DisableLostMode",
        NoParams,
        "紛失モードの解除",
        "Disable lost mode",
        expires_after=None,  # a lost-mode command: waits for the lost tablet like lost mode itself
        priority=Priority.URGENT,
        requires_supervision=True,
    )
)
register(
    CommandType(
        "DeviceLocation",
        NoParams,
        "位置情報の取得(紛失モード中)",
        "Locate the device (in lost mode)",
        expires_after=None,  # a lost-mode command: waits for the lost tablet like lost mode itself
        priority=Priority.HIGH,
        requires_supervision=True,
    )
)
register(
    CommandType(
        "PlayLostModeSound",
        NoParams,
        "紛失モードの警告音を鳴らす",
        "Play the lost-mode sound",
        expires_after=None,  # a lost-mode command: waits for the lost tablet like lost mode itself
        priority=Priority.HIGH,
        requires_supervision=True,
    )
)
register(
    CommandType(
        "ClearPasscode",
        NoParams,
        "パスコードの解除",
        "Clear the passcode",
        priority=Priority.HIGH,
        at_delivery=_with_unlock_token,
        refuse_for=_without_unlock_token,
    )
)
register(
    CommandType(
        "ShutDownDevice",
        NoParams,
        "電源を切る",
        "Shut down the device",
        priority=Priority.NORMAL,
        requires_supervision=True,
    )
)
