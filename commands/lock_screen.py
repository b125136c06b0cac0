"""The text a lost tablet shows on its lock screen: the one definition of a valid message and a
valid callback number, for every door and both platforms.

DeviceLock and EnableLostMode (Apple's keys), the Android agent's LOCK and START_LOST_MODE, the
hotline's lock form and its API all use these fields; nothing else checks the text again.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, pre_load, validate

MAX_MESSAGE = 500
MAX_FOOTNOTE = 200
MAX_PHONE = 32
# Digits, +, -, parentheses and spaces: what a station's number looks like, and nothing a lock
# screen could render as something else.
PHONE_PATTERN = rf"^[0-9+\-() ]{{1,{MAX_PHONE}}}$"
PHONE_ERROR = "must be a phone number (digits, + - ( ) and spaces)"


def message_field(**kwargs: Any) -> fields.String:
    """A lock-screen message: 1 to 500 characters."""
    return fields.String(validate=validate.Length(min=1, max=MAX_MESSAGE), **kwargs)


def footnote_field(**kwargs: Any) -> fields.String:
    """Lost mode's footnote (Apple) / organisation line (Android): 1 to 200 characters."""
    return fields.String(validate=validate.Length(min=1, max=MAX_FOOTNOTE), **kwargs)


def phone_field(*, optional_blank: bool = False, **kwargs: Any) -> fields.String:
    """A callback number. `optional_blank`: an empty string means "none given" (a form field)."""
    if optional_blank:
        return fields.String(validate=_blank_or_phone, **kwargs)
    return fields.String(validate=_PHONE, **kwargs)


_PHONE = validate.Regexp(PHONE_PATTERN, error=PHONE_ERROR)


def _blank_or_phone(value: str) -> None:
    if value != "":
        _PHONE(value)


class UnitLockTextSchema(Schema):
    """A station's own lock-screen text, set on its org unit; blank (None) inherits from above."""

    message = message_field(allow_none=True, load_default=None)
    phone_number = phone_field(allow_none=True, load_default=None)

    @pre_load
    def _blank_is_none(self, data: Any, **_kwargs: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = {}
        for key, value in data.items():
            value = value.strip() if isinstance(value, str) else value
            out[key] = None if value == "" else value
        return out
