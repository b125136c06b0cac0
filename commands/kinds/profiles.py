"""Configuration profile commands: install a (signed) profile, remove one by identifier."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from commands.catalog import CommandType, Priority, register

MAX_PROFILE_BYTES = 512 * 1024
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)+$")


class ProfileData(fields.Field):
    """Profile bytes (a signed .mobileconfig). Accepts bytes or base64 text; stored as base64 text
    so the command's parameters stay JSON."""

    default_error_messages = {
        "invalid": "must be the profile as bytes or base64 text",
        "empty": "must not be empty",
        "too_large": f"must be at most {MAX_PROFILE_BYTES} bytes",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            raw = bytes(value)
        elif isinstance(value, str):
            try:
                raw = base64.b64decode("".join(value.split()), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise self.make_error("invalid") from exc
        else:
            raise self.make_error("invalid")
        if not raw:
            raise self.make_error("empty")
        if len(raw) > MAX_PROFILE_BYTES:
            raise self.make_error("too_large")
        return base64.b64encode(raw).decode("ascii")


class InstallProfileParams(Schema):
    Payload = ProfileData(required=True)


class RemoveProfileParams(Schema):
    Identifier = fields.String(
        required=True,
        validate=[
            validate.Length(min=3, max=255),
            validate.Regexp(_IDENTIFIER, error="must be a reverse-DNS profile identifier"),
        ],
    )


def _install_to_apple(params: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"Payload": base64.b64decode(params["Payload"])}
    except (KeyError, binascii.Error, TypeError) as exc:
        raise ValidationError("stored Payload is not base64", "Payload") from exc


register(
    CommandType(
        "InstallProfile",
        InstallProfileParams,
        "構成プロファイルのインストール",
        "Install a configuration profile",
        priority=Priority.HIGH,
        to_apple=_install_to_apple,
    )
)
register(
    CommandType(
        "RemoveProfile",
        RemoveProfileParams,
        "構成プロファイルの削除",
        "Remove a configuration profile",
        priority=Priority.HIGH,
    )
)
