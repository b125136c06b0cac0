"""The Android agent protocol, version 1, as the door reads it: paths, the request signature and
the request schemas (its version, platform name and errors are the service's:
mdm.services.android_channel.agent). docs/android-agent-protocol.md is the specification.

Every request body is JSON. Unknown keys are ignored, so an agent may send more than this version
knows; a known key with a wrong type or value is refused with 400 naming it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from mdm.services.android_channel import ProtocolError

PREFIX = "/android/v1"

# Request signature (docs/android-agent-protocol.md, "Authentication").
CERTIFICATE_HEADER = "Hikeshi-Certificate"
TIMESTAMP_HEADER = "Hikeshi-Timestamp"
SIGNATURE_HEADER = "Hikeshi-Signature"
# A fresh random value per request (at least 128 bits): the server accepts each nonce once.
NONCE_HEADER = "Hikeshi-Nonce"
SIGNATURE_SCHEME = "HIKESHI-ANDROID-V1"

MAX_PACKAGES = 5000
MAX_RESULTS = 500


def signing_string(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What the agent signs: scheme, method, path (with ?query if any), timestamp, nonce, SHA-256
    of the body."""
    return "\n".join(
        (SIGNATURE_SCHEME, method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest())
    ).encode("utf-8")


# -- request schemas ---------------------------------------------------------------------------


class StrictBoolean(fields.Boolean):
    """JSON true or false only: "yes" or 1 is a mistake of the agent, not a boolean."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictFloat(fields.Float):
    """A JSON number only: a quoted number is refused, not converted."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


def _text(limit: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(max=limit), allow_none=True, **kwargs)


class HardwareSchema(_Lenient):
    serial_number = _text(64)
    manufacturer = _text(64)
    model = _text(64)
    brand = _text(64)
    product = _text(64)
    device_name = _text(255)
    imei = _text(32)
    wifi_mac = _text(32)


class AgentSchema(_Lenient):
    package = _text(255)
    version_name = _text(64)
    version_code = fields.Integer(strict=True, allow_none=True)


class EnrollRequestSchema(_Lenient):
    enrollment_token = fields.String(required=True, validate=validate.Length(min=1, max=128))
    csr = fields.String(required=True, validate=validate.Length(min=1, max=16384))
    hardware = fields.Nested(HardwareSchema, load_default=dict)
    agent = fields.Nested(AgentSchema, load_default=dict)
    device_owner = StrictBoolean(load_default=None, allow_none=True)


class OsSchema(_Lenient):
    android_version = _text(32)
    sdk_int = fields.Integer(strict=True, allow_none=True)
    build_id = _text(64)
    security_patch = fields.String(
        allow_none=True, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$", error="must be YYYY-MM-DD")
    )


class BatterySchema(_Lenient):
    level = StrictFloat(allow_none=True, validate=validate.Range(min=0, max=1))
    charging = StrictBoolean(allow_none=True)


class StorageSchema(_Lenient):
    total_bytes = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))
    available_bytes = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))


class SecuritySchema(_Lenient):
    encryption = fields.String(
        allow_none=True, validate=validate.OneOf(("active", "active_per_user", "inactive", "unsupported"))
    )
    device_owner = StrictBoolean(allow_none=True)
    password_set = StrictBoolean(allow_none=True)
    password_sufficient = StrictBoolean(allow_none=True)
    lost_mode = StrictBoolean(allow_none=True)


class PackageSchema(_Lenient):
    package_name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    label = _text(255)
    version_name = _text(64)
    version_code = fields.Integer(strict=True, allow_none=True)
    system = StrictBoolean(load_default=False)


class LocationSchema(_Lenient):
    latitude = StrictFloat(required=True, validate=validate.Range(min=-90, max=90))
    longitude = StrictFloat(required=True, validate=validate.Range(min=-180, max=180))
    accuracy_m = StrictFloat(allow_none=True, validate=validate.Range(min=0))
    time = fields.AwareDateTime(allow_none=True)


class InventorySchema(_Lenient):
    hardware = fields.Nested(HardwareSchema, load_default=dict)
    os = fields.Nested(OsSchema, load_default=dict)
    battery = fields.Nested(BatterySchema, allow_none=True)
    storage = fields.Nested(StorageSchema, allow_none=True)
    security = fields.Nested(SecuritySchema, load_default=dict)
    time_zone = _text(64)
    packages = fields.List(
        fields.Nested(PackageSchema), allow_none=True, validate=validate.Length(max=MAX_PACKAGES)
    )
    location = fields.Nested(LocationSchema, allow_none=True)


class ResultErrorSchema(_Lenient):
    code = _text(64)
    message = _text(1000)


class ResultSchema(_Lenient):
    command_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    status = fields.String(required=True, validate=validate.OneOf(("acknowledged", "error", "not_now")))
    error = fields.Nested(ResultErrorSchema, allow_none=True)
    location = fields.Nested(LocationSchema, allow_none=True)


class SyncRequestSchema(_Lenient):
    policy_version = _text(128, load_default=None)
    inventory = fields.Nested(InventorySchema, load_default=None, allow_none=True)
    results = fields.List(
        fields.Nested(ResultSchema), load_default=list, validate=validate.Length(max=MAX_RESULTS)
    )


class WifiCertificateRequestSchema(_Lenient):
    key_alias = fields.String(required=True, validate=validate.Length(min=1, max=128))
    csr = fields.String(required=True, validate=validate.Length(min=1, max=16384))


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validated data, or ProtocolError 400 naming the first offending field (dotted path)."""
    if not isinstance(data, Mapping):
        raise ProtocolError(400, "bad_request", "the body must be a JSON object", "body")
    try:
        return dict(schema.load(dict(data)))
    except ValidationError as exc:
        field, message = _first_error(exc.messages)
        raise ProtocolError(400, "bad_request", f"{field}: {message}", field) from exc


def _first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    if isinstance(messages, Mapping):
        key = sorted(messages, key=str)[0]
        name = f"{prefix}.{key}" if prefix else str(key)
        return _first_error(messages[key], name)
    if isinstance(messages, list) and messages:
        return (
            _first_error(messages[0], prefix) if not isinstance(messages[0], str) else (prefix, messages[0])
        )
    return (prefix or "body", str(messages))
