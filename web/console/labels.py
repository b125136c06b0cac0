"""Display names for states, roles and commands in the console's language."""

from __future__ import annotations

import re

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l

from commands.catalog import UnknownCommand, get_command_type

STATUS = {
    "queued": _l("queued"),
    "sent": _l("sent"),
    "acknowledged": _l("acknowledged"),
    "error": _l("error"),
    "not_now": _l("not now (device busy)"),
    "cancelled": _l("cancelled"),
    "expired": _l("expired"),
    "failed": _l("failed: answer not accepted"),
}
ENROLLMENT = {
    "pending": _l("enrolling"),
    "enrolled": _l("enrolled"),
    "unenrolled": _l("unenrolled"),
    "retired": _l("retired (wiped)"),
}
ROLES = {
    "admin": _l("Administrator"),
    "operator": _l("Hotline operator"),
    "approver": _l("Approver"),
    "auditor": _l("Auditor"),
    "dispatch": _l("Dispatch system (API only)"),
    "dispatcher": _l("Dispatch staff (reads readiness only)"),
}
TOKEN_STATES = {
    "active": _l("active"),
    "expired": _l("expired"),
    "used_up": _l("used up"),
    "revoked": _l("revoked"),
}


def status_label(status: str) -> str:
    return str(STATUS.get(status, status))


_TOO_LARGE = re.compile(r"answer too large \((\d+) bytes\)")


def failure_label(reason: str | None) -> str:
    """Why a failed command's answer was refused, in the console's language."""
    if not reason:
        return ""
    match = _TOO_LARGE.fullmatch(reason)
    if match is None:
        return reason
    return str(_l("answer too large (%(size)s bytes)", size=f"{int(match.group(1)):,}"))


def enrollment_label(state: str) -> str:
    return str(ENROLLMENT.get(state, state))


def role_label(role: str) -> str:
    return str(ROLES.get(role, role))


def token_state_label(state: str) -> str:
    return str(TOKEN_STATES.get(state, state))


def command_label(request_type: str) -> str:
    try:
        kind = get_command_type(request_type)
    except UnknownCommand:
        return request_type
    if str(get_locale() or "ja") == "ja":
        return f"{kind.description_ja} ({request_type})"
    return f"{kind.description_en} ({request_type})"


# Compliance rules by id, as the device list, alerts and continuity reasons name them.
RULES = {
    "unauthorized_app": _l("Unauthorized app"),
    "passcode_missing": _l("No passcode set"),
    "passcode_not_compliant": _l("Passcode does not meet the policy"),
    "not_supervised": _l("Not supervised"),
    "os_outdated": _l("OS older than the unit's minimum"),
    "offline_too_long": _l("Not seen for too long"),
    "identity_certificate_expiring": _l("Identity certificate expiring"),
    "profile_missing_or_outdated": _l("Profile missing or outdated"),
    "android_security_patch_outdated": _l("Android security patch older than the unit's minimum"),
    "android_not_device_owner": _l("Agent is not the device owner"),
    "os_update_overdue": _l("OS update past its deadline"),
    "amapi_policy_not_applied": _l("Policy not applied (Android Management API)"),
}
