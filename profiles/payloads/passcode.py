"""Passcode policy: length, complexity, age, history, auto-lock and the self-wipe threshold.

Ranges are the ones both platforms can honour (Apple's are the narrower ones:
com.apple.mobiledevice.passwordpolicy), so a valid spec renders the same rule everywhere.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, post_load, validate, validates_schema

from profiles.payloads.common import PayloadKind, StrictBoolean, StrictInteger


class PasscodeSchema(Schema):
    min_length = StrictInteger(required=True, validate=validate.Range(min=1, max=16))
    require_alphanumeric = StrictBoolean(load_default=False)
    # Simple passcodes are repeating or sequential ones such as 1111 or 1234.
    allow_simple = StrictBoolean(load_default=False)
    # Characters that are neither letters nor digits.
    min_complex_chars = StrictInteger(validate=validate.Range(min=0, max=4))
    max_age_days = StrictInteger(validate=validate.Range(min=1, max=730))
    history = StrictInteger(validate=validate.Range(min=1, max=50))
    auto_lock_minutes = StrictInteger(validate=validate.Range(min=1, max=15))
    # After this many wrong passcodes in a row the device erases itself.
    max_failed_attempts = StrictInteger(validate=validate.Range(min=2, max=11))

    @validates_schema
    def _fits(self, data: dict[str, Any], **kwargs: Any) -> None:
        needed = data.get("min_complex_chars", 0) + (2 if data.get("require_alphanumeric") else 0)
        if needed > data["min_length"]:
            raise ValidationError(
                {"min_length": [f"Must be at least {needed} to hold the required character classes."]}
            )

    @post_load
    def _plain(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return dict(data)


KIND = PayloadKind(
    name="passcode",
    schema=PasscodeSchema,
    title_ja="パスコード",
    title_en="Passcode",
    multiple=False,
)
