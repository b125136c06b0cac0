"""Hikeshi's queued commands as Android Management API calls (pure: no database, no network).

The queue keeps Apple's request types (the hotline queues DeviceLock, EnableLostMode, EraseDevice
for every platform: commands.catalog). For a tablet of an AMAPI-mode unit each becomes the body of
`enterprises.devices.issueCommand` (an AMAPI `Command`), or, for the wipe, the query of
`enterprises.devices.delete`. A command AMAPI has no equivalent for is refused by name
(`NotOnAmapi`): the sender ends it in error instead of leaving it queued for ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from commands.kinds.android import wipe_flags

# The agent's wipeData flags (commands.kinds.android) as devices.delete's wipeDataFlags.
_WIPE_FLAGS = {"WIPE_EXTERNAL_STORAGE": "WIPE_EXTERNAL_STORAGE", "WIPE_EUICC": "WIPE_ESIMS"}
# devices.delete: "The maximum message length is 200 characters."
MAX_WIPE_REASON = 200
DEFAULT_WIPE_REASON = "紛失・盗難の届出により消防本部が消去しました / Wiped by fire HQ after a loss report"


class NotOnAmapi(ValueError):
    """The command has no Android Management API equivalent (the reason names it)."""


@dataclass(frozen=True)
class DeleteCall:
    """devices.delete's query: the wipe."""

    wipe_data_flags: tuple[str, ...]
    wipe_reason_message: str

    def params(self) -> dict[str, Any]:
        return {"wipeDataFlags": list(self.wipe_data_flags), "wipeReasonMessage": self.wipe_reason_message}


def _message(text: Any) -> dict[str, Any] | None:
    """An AMAPI UserFacingMessage, or None for no text."""
    return {"defaultMessage": str(text)} if text not in (None, "") else None


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def issue_command_body(
    request_type: str, params: Mapping[str, Any], secret: str | None = None
) -> dict[str, Any]:
    """The `Command` to issue for a queued command; `secret` is its unsealed new password
    (ResetPassword), never stored. Raises NotOnAmapi."""
    if request_type == "DeviceLock":
        # AMAPI's LOCK shows no message (the lost-mode screen does): the text goes with lost mode.
        return {"type": "LOCK"}
    if request_type == "EnableLostMode":
        lost = _present(
            lostMessage=_message(params.get("Message")),
            lostPhoneNumber=_message(params.get("PhoneNumber")),
            lostOrganization=_message(params.get("Footnote")),
            lostEmailAddress=params.get("EmailAddress") or None,
            lostStreetAddress=_message(params.get("StreetAddress")),
        )
        return {"type": "START_LOST_MODE", "startLostModeParams": lost}
    if request_type == "DisableLostMode":
        return {"type": "STOP_LOST_MODE", "stopLostModeParams": {}}
    if request_type == "RestartDevice":
        return {"type": "REBOOT"}
    if request_type == "ResetPassword":
        body: dict[str, Any] = {"type": "RESET_PASSWORD"}
        if secret:
            body["newPassword"] = secret
        flags = list(params.get("flags") or [])
        if flags:
            body["resetPasswordFlags"] = flags
        return body
    if request_type == "ClearAppData":
        return {"type": "CLEAR_APP_DATA", "clearAppsDataParams": {"packageNames": list(params["packages"])}}
    if request_type == "RelinquishOwnership":
        return {"type": "RELINQUISH_OWNERSHIP"}
    raise NotOnAmapi(f"{request_type} has no Android Management API command; it cannot reach this tablet")


# AMAPI expires a command the tablet has not run within its `duration`, ten minutes when none is
# given: a lost tablet that is off for an hour would never lock. A command Hikeshi never expires
# (lock, lost mode) asks for ten years, which for a tablet is never (AMAPI sets no maximum).
NEVER_EXPIRES = timedelta(days=3650)


def command_duration(expires_at: datetime | None, now: datetime) -> str:
    """The `duration` of the issued Command: what is left of Hikeshi's own lifetime of it."""
    left = NEVER_EXPIRES if expires_at is None else expires_at - now
    return f"{max(1, int(left.total_seconds()))}s"


def delete_call(params: Mapping[str, Any], reason: str | None) -> DeleteCall:
    """EraseDevice as devices.delete. The flags are the agent's (commands.kinds.android.wipe_flags:
    external storage always; the eSIMs unless PreserveDataPlan), translated. Factory-reset
    protection is kept unless the wipe asks to erase it (WIPE_RESET_PROTECTION_DATA), as the
    agent keeps it: a thief cannot set a wiped tablet up again without the organisation's account.
    """
    agent_flags = wipe_flags(dict(params))
    flags = [_WIPE_FLAGS[flag] for flag in agent_flags if flag in _WIPE_FLAGS]
    if "WIPE_RESET_PROTECTION_DATA" not in agent_flags:
        flags.insert(0, "PRESERVE_RESET_PROTECTION_DATA")
    text = (reason or "").strip() or DEFAULT_WIPE_REASON
    return DeleteCall(tuple(flags), text[:MAX_WIPE_REASON])


# -- what an Operation says ---------------------------------------------------------------------------

# Command statuses in an Operation's metadata that say the action did not happen.
_FAILED_STATUS = {
    "startLostModeStatus": {"RESET_PASSWORD_RECENTLY", "USER_EXIT_LOST_MODE_RECENTLY"},
    "stopLostModeStatus": set(),
}


@dataclass(frozen=True)
class OperationOutcome:
    """What an Operation says: pending (not done), succeeded, or failed with a reason."""

    done: bool
    failed: bool
    code: str | None = None
    message: str | None = None

    @property
    def pending(self) -> bool:
        return not self.done


def operation_outcome(operation: Mapping[str, Any]) -> OperationOutcome:
    """An Operation as Hikeshi reads it (DESIGN.md invariant 5): not done is pending; done with an
    `error`, or with a command status that says the action did not happen, is a failure; done
    otherwise is success."""
    if not operation.get("done"):
        return OperationOutcome(done=False, failed=False)
    found = operation.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    error = operation.get("error")
    if isinstance(error, Mapping):
        code = metadata.get("errorCode") or error.get("code")
        return OperationOutcome(
            True, True, str(code) if code is not None else None, str(error.get("message") or "")
        )
    if metadata.get("errorCode") not in (None, "COMMAND_ERROR_CODE_UNSPECIFIED"):
        return OperationOutcome(True, True, str(metadata["errorCode"]), "the device reported an error")
    for key, failed in _FAILED_STATUS.items():
        status = (metadata.get(key) or {}).get("status") if isinstance(metadata.get(key), Mapping) else None
        if status in failed:
            return OperationOutcome(True, True, str(status), f"{key}: {status}")
    return OperationOutcome(done=True, failed=False)


def report_for(command_uuid: str, outcome: OperationOutcome) -> dict[str, Any]:
    """The settled Operation as a report for commands.results.record_result (Apple's shape, which
    every command's result handler reads)."""
    if not outcome.failed:
        return {"CommandUUID": command_uuid, "Status": "Acknowledged"}
    return {
        "CommandUUID": command_uuid,
        "Status": "Error",
        "ErrorChain": [
            {
                "ErrorDomain": "androidmanagement",
                "ErrorCode": outcome.code or "UNKNOWN",
                "USEnglishDescription": (outcome.message or "")[:500],
            }
        ],
    }


def without_secrets(operation: Mapping[str, Any]) -> dict[str, Any]:
    """The Operation as kept in the command's result: a RESET_PASSWORD's new password never stored."""
    clean = dict(operation)
    metadata = clean.get("metadata")
    if isinstance(metadata, Mapping) and "newPassword" in metadata:
        clean["metadata"] = {k: ("(redacted)" if k == "newPassword" else v) for k, v in metadata.items()}
    return clean
