"""Reading what a device answered about Activation Lock, as it may really come: Apple's keys with
unexpected types, keys Hikeshi does not know, partial answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Apple's bypass codes are groups of letters and digits joined by hyphens (e.g.
# "DGRQ-P1FV-H3V9-J8CL-VJD7-ULCT"); anything else is not kept as a code.
_CODE = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\Z")
MAX_CODE = 128


class UnreadableCode(ValueError):
    """The answer carries ActivationLockBypassCode, but not as a code (its value is never shown)."""


def bypass_code_of(report: Mapping[str, Any]) -> str | None:
    """The code of an ActivationLockBypassCode answer; None when the device gave none (missing,
    empty: Apple keeps it only 15 days after supervision). UnreadableCode for a value that is
    there but is not a code."""
    value = report.get("ActivationLockBypassCode")
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise UnreadableCode("not ASCII") from None
    if not isinstance(value, str):
        raise UnreadableCode(f"a {type(value).__name__}, not a string")
    code = value.strip()
    if not code:
        return None
    if len(code) > MAX_CODE or not _CODE.match(code):
        raise UnreadableCode("not letters and digits in hyphenated groups")
    return code


def allowed_in_mdm_options(answers: Mapping[str, Any]) -> bool | None:
    """ActivationLockAllowedWhileSupervised from a DeviceInformation MDMOptions answer; None when
    the device did not say (no MDMOptions, or no such key: a device that never got the option)."""
    options = answers.get("MDMOptions")
    if not isinstance(options, Mapping):
        return None
    value = options.get("ActivationLockAllowedWhileSupervised")
    return value if isinstance(value, bool) else None


def settings_acknowledged(report: Mapping[str, Any]) -> bool:
    """A Settings answer applied every item: the report says Acknowledged and no per-item status
    (Apple's `Settings` response key, a list or one dictionary) says Error."""
    if report.get("Status") != "Acknowledged":
        return False
    items = report.get("Settings")
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        return True
    return all(not (isinstance(item, Mapping) and item.get("Status") == "Error") for item in items)
