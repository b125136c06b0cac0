"""Lost mode, location, passcode clearing and shutdown: what the hotline sends to a lost tablet."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from commands.catalog import CommandType, DeliveryContext, Priority, register
from mdm.secretbox import unseal

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


def _with_unlock_token(keys: dict[str, Any], context: DeliveryContext) -> dict[str, Any]:
    # Unsealed only here, at delivery: the token never sits in commands.params or the audit log.
    sealed = context.device.unlock_token_encrypted
    if sealed is None:
        # Nothing to clear the passcode with; the device answers with an Error that is recorded.
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
