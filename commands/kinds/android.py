"""The Android agent's command vocabulary: its commands and the parameters each one receives.

The catalog keeps one class per action, under Apple's request type: the hotline, the API, the
console and RBAC (who may queue what; a wipe only through the two-person workflow) work the same
for both platforms. A class whose action the agent can do declares its Android equivalent
(`CommandType.android`); the agent receives it under the Android name with these parameters,
checked here when the command is rendered (mdm.doors.android.delivery).

No Android command is queued under its own name: a directly queueable WIPE would bypass the
two-person rule that guards EraseDevice.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from commands.command_type import NoParams
from commands.lock_screen import footnote_field, message_field, phone_field

# DevicePolicyManager.wipeData flags, by their constant names.
WIPE_FLAGS = ("WIPE_EXTERNAL_STORAGE", "WIPE_RESET_PROTECTION_DATA", "WIPE_EUICC", "WIPE_SILENTLY")
# A lost tablet keeps factory-reset protection (a thief cannot set it up again) and its SD card
# is erased with it.
DEFAULT_WIPE_FLAGS = ("WIPE_EXTERNAL_STORAGE",)


# AMAPI resetPasswordFlags: REQUIRE_ENTRY and DO_NOT_ASK_CREDENTIALS_ON_BOOT are the
# DevicePolicyManager RESET_PASSWORD_* flags of the same names; LOCK_NOW is lockNow() right after.
RESET_PASSWORD_FLAGS = ("REQUIRE_ENTRY", "DO_NOT_ASK_CREDENTIALS_ON_BOOT", "LOCK_NOW")


class ResetPasswordParams(Schema):
    # Absent: the password is cleared (only where the policy wants none; checked at queueing).
    password = fields.String(validate=validate.Length(max=16))
    flags = fields.List(
        fields.String(validate=validate.OneOf(RESET_PASSWORD_FLAGS)),
        load_default=list,
        validate=validate.Length(max=len(RESET_PASSWORD_FLAGS)),
    )


class LockParams(Schema):
    message = message_field()
    phone = phone_field()


class StartLostModeParams(Schema):
    message = message_field()
    phone = phone_field()
    organization = footnote_field()

    @validates_schema
    def _message_or_phone(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data.get("message") and not data.get("phone"):
            raise ValidationError("message or phone is required", field_name="message")


class WipeParams(Schema):
    flags = fields.List(
        fields.String(validate=validate.OneOf(WIPE_FLAGS)),
        load_default=lambda: list(DEFAULT_WIPE_FLAGS),
        validate=validate.Length(max=len(WIPE_FLAGS)),
    )
    reason = fields.String(validate=validate.Length(min=1, max=200))


class ClearAppDataParams(Schema):
    packages = fields.List(
        fields.String(validate=validate.Length(min=1, max=255)),
        required=True,
        validate=validate.Length(min=1, max=50),
    )


# The agent's commands and the schema of the parameters it receives (checked at rendering).
ANDROID_COMMANDS: dict[str, type[Schema]] = {
    "LOCK": LockParams,
    "START_LOST_MODE": StartLostModeParams,
    "STOP_LOST_MODE": NoParams,
    "LOCATE": NoParams,
    "RESET_PASSWORD": ResetPasswordParams,
    "REBOOT": NoParams,
    "WIPE": WipeParams,
    "REFRESH_INVENTORY": NoParams,
    "RELINQUISH_OWNERSHIP": NoParams,
    "CLEAR_APP_DATA": ClearAppDataParams,
}


def present(**values: Any) -> dict[str, Any]:
    """The values that are given (not None, not empty)."""
    return {key: value for key, value in values.items() if value not in (None, "")}


def wipe_flags(params: dict[str, Any]) -> list[str]:
    """EraseDevice's parameters as the agent's wipeData flags.

    EraseDevice on Android erases the eSIM's data plan unless PreserveDataPlan is true. Apple's
    default (device.erase.yaml: PreserveDataPlan, default false) removes the plan, and a lost or
    stolen tablet should not keep a working line for whoever holds it: the hotline wipe (sent
    without parameters) therefore erases it on both platforms. WIPE_EUICC is that flag on Android
    (DevicePolicyManager.wipeData); PreserveDataPlan=true leaves it out, for a tablet that is
    wiped to be reissued on the same line.
    """
    flags = list(DEFAULT_WIPE_FLAGS)
    if not params.get("PreserveDataPlan", False):
        flags.append("WIPE_EUICC")
    return flags
