"""The Android agent's commands, as the Apple request types they carry out.

The catalog keeps one entry per action, under Apple's request type: the hotline, the API, the
console and RBAC (who may queue what; a wipe only through the two-person workflow) work the same
for both platforms. Each action the agent can do is declared here with its Android command
(commands.catalog.register_equivalent): the Apple type then accepts Android devices, keeps its
name on the queue so its result handlers run (incident locked, location, wipe certificate), and
the agent receives it under its Android name with Android parameters (mdm.doors.android.delivery).

    DeviceLock → LOCK                 EnableLostMode → START_LOST_MODE
    DisableLostMode → STOP_LOST_MODE  DeviceLocation → LOCATE
    ClearPasscode → RESET_PASSWORD    RestartDevice → REBOOT
    EraseDevice → WIPE                DeviceInformation, SecurityInfo, InstalledApplicationList,
                                      ProfileList, CertificateList → REFRESH_INVENTORY

No Android command is queued under its own name: a directly queueable WIPE would bypass the
two-person rule that guards EraseDevice.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from commands.command_type import PlatformEquivalent, register_equivalent

# The Apple kinds must be registered before their Android equivalents are declared.
from commands.kinds import device_control, inventory, lost_mode, security  # noqa: F401

ANDROID = "android"
PHONE = validate.Regexp(r"^[0-9+\-() ]{1,32}$", error="must be a phone number")
# DevicePolicyManager.wipeData flags, by their constant names.
WIPE_FLAGS = ("WIPE_EXTERNAL_STORAGE", "WIPE_RESET_PROTECTION_DATA", "WIPE_EUICC", "WIPE_SILENTLY")
# A lost tablet keeps factory-reset protection (a thief cannot set it up again) and its SD card
# is erased with it.
DEFAULT_WIPE_FLAGS = ("WIPE_EXTERNAL_STORAGE",)


class NoParams(Schema):
    """A command without parameters; anything given is an error naming the key."""


class LockParams(Schema):
    message = fields.String(validate=validate.Length(min=1, max=500))
    phone = fields.String(validate=PHONE)


class StartLostModeParams(Schema):
    message = fields.String(validate=validate.Length(min=1, max=500))
    phone = fields.String(validate=PHONE)
    organization = fields.String(validate=validate.Length(min=1, max=200))

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


# The agent's commands and the schema of the parameters it receives (checked at rendering).
ANDROID_COMMANDS: dict[str, type[Schema]] = {
    "LOCK": LockParams,
    "START_LOST_MODE": StartLostModeParams,
    "STOP_LOST_MODE": NoParams,
    "LOCATE": NoParams,
    "RESET_PASSWORD": NoParams,
    "REBOOT": NoParams,
    "WIPE": WipeParams,
    "REFRESH_INVENTORY": NoParams,
}


# -- Apple request types the agent carries out -------------------------------------------------


def _lock(params: dict[str, Any]) -> dict[str, Any]:
    return _present(message=params.get("Message"), phone=params.get("PhoneNumber"))


def _lost_mode(params: dict[str, Any]) -> dict[str, Any]:
    return _present(
        message=params.get("Message"), phone=params.get("PhoneNumber"), organization=params.get("Footnote")
    )


def _erase(params: dict[str, Any]) -> dict[str, Any]:
    """EraseDevice on Android erases the eSIM's data plan unless PreserveDataPlan is true.

    Apple's default (device.erase.yaml: PreserveDataPlan, default false) removes the plan, and a
    lost or stolen tablet should not keep a working line for whoever holds it: the hotline wipe
    (sent without parameters) therefore erases it on both platforms. WIPE_EUICC is that flag on
    Android (DevicePolicyManager.wipeData); PreserveDataPlan=true leaves it out, for a tablet
    that is wiped to be reissued on the same line.
    """
    flags = list(DEFAULT_WIPE_FLAGS)
    if not params.get("PreserveDataPlan", False):
        flags.append("WIPE_EUICC")
    return {"flags": flags}


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "")}


for _apple, _equivalent in {
    "DeviceLock": PlatformEquivalent("LOCK", _lock),
    "EnableLostMode": PlatformEquivalent("START_LOST_MODE", _lost_mode),
    "DisableLostMode": PlatformEquivalent("STOP_LOST_MODE"),
    "DeviceLocation": PlatformEquivalent("LOCATE"),
    "EraseDevice": PlatformEquivalent("WIPE", _erase),
    "RestartDevice": PlatformEquivalent("REBOOT"),
    # The passcode is cleared by the device owner itself: no UnlockToken is involved.
    "ClearPasscode": PlatformEquivalent("RESET_PASSWORD"),
    # The agent sends its whole inventory with every sync; these only ask for one now.
    "DeviceInformation": PlatformEquivalent("REFRESH_INVENTORY"),
    "SecurityInfo": PlatformEquivalent("REFRESH_INVENTORY"),
    "InstalledApplicationList": PlatformEquivalent("REFRESH_INVENTORY"),
    # Part of every full refresh (mdm.services.inventory.refresh); their Apple parsers find no list in the
    # agent's acknowledgement and leave everything as it is.
    "ProfileList": PlatformEquivalent("REFRESH_INVENTORY"),
    "CertificateList": PlatformEquivalent("REFRESH_INVENTORY"),
}.items():
    register_equivalent(_apple, ANDROID, _equivalent)
