"""Marshmallow schemas of the REST API: the one place outside data is validated.

Every string field refuses NUL and lone surrogates (PostgreSQL cannot store them), every number
has bounds (no value may overflow a column), so bad input is a 400, never a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.orm import object_session

from mdm.ground.models import CommandStatus, EnrollmentState, OrgUnitKind, TokenPlatform, UnitType
from web.rbac import TOKEN_ROLES, USER_ROLES

MAX_ID = 2**31 - 1


def _clean_text(value: str) -> None:
    for ch in value:
        code = ord(ch)
        if code == 0 or 0xD800 <= code <= 0xDFFF:
            raise ValidationError("contains a character that cannot be stored (NUL or lone surrogate)")


# The same rule in the OpenAPI document, so clients (and schemathesis) know it.
STORABLE_TEXT = "^[^\\u0000]*$"  # lone surrogates (only as \\u escapes) are refused too


class StrictBoolean(fields.Boolean):
    """JSON true or false only: 0, 1 or "yes" is a client's mistake, refused rather than guessed
    at (truthy={True} would not do: 1 == True in a Python set)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Text(fields.String):
    """A string without NUL or lone surrogates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        validators = kwargs.get("validate")
        listed = validators if isinstance(validators, list | tuple) else [validators]
        metadata = dict(kwargs.pop("metadata", None) or {})
        # A field with a pattern of its own keeps that one (OpenAPI has one pattern per string).
        if not any(isinstance(v, validate.Regexp) for v in listed):
            metadata.setdefault("pattern", STORABLE_TEXT)
        super().__init__(*args, metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        _clean_text(text)
        return text


def Id(*, strict: bool = True, **kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=strict, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


def _check_json_value(value: Any, depth: int = 0) -> None:
    if depth > 8:
        raise ValidationError("nested too deeply")
    if isinstance(value, str):
        _clean_text(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            _clean_text(str(key))
            _check_json_value(inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            _check_json_value(inner, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise ValidationError("number out of range")
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValidationError("number out of range")


class JsonObject(fields.Dict):
    """A JSON object of plain values, checked deeply for storable strings and sane numbers."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)
        _check_json_value(result)
        if len(str(result)) > 20_000:
            raise ValidationError("too large")
        return result


def _in_range(value: datetime) -> None:
    # Only a time that exists in UTC can be compared with stored times (0001-01-01T00:00+09:00
    # does not).
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValidationError("date out of range") from exc


def When(**kwargs: Any) -> fields.AwareDateTime:
    return fields.AwareDateTime(default_timezone=UTC, validate=_in_range, **kwargs)


# -- errors -------------------------------------------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable error code"})
    message = fields.String(required=True)
    # Named `fields` on the wire; the attribute may not be (Schema.fields is marshmallow's own).
    field_messages = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.Raw(),
        required=True,
        metadata={"description": "messages per offending input field; empty when none is at fault"},
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


# -- pagination ---------------------------------------------------------------------------------


class PageQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class PageSchema(Schema):
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)


# -- me -----------------------------------------------------------------------------------------


class MeSchema(Schema):
    kind = fields.String(required=True, metadata={"description": "user or token"})
    name = fields.String(required=True)
    role = fields.String(required=True)
    org_unit_id = fields.Integer(allow_none=True, required=True)
    permissions = fields.List(fields.String(), required=True)


# -- devices ------------------------------------------------------------------------------------

COMPLIANCE_STATES = ("compliant", "noncompliant", "unknown")
COMPLIANCE_SEVERITIES = ("ok", "info", "warning", "critical")


class DeviceQuerySchema(PageQuerySchema):
    unit_id = Id(strict=False, metadata={"description": "only devices in this org unit or below it"})
    platform = fields.String(validate=validate.OneOf(("apple", "android")))
    status = fields.String(validate=validate.OneOf(EnrollmentState.ALL))
    compliance = fields.String(
        validate=validate.OneOf(COMPLIANCE_STATES),
        metadata={
            "description": "compliant: no open finding worse than info; noncompliant: a warning or "
            "critical finding is open; unknown: never evaluated"
        },
    )
    compliance_severity = fields.String(
        validate=validate.OneOf(COMPLIANCE_SEVERITIES),
        metadata={"description": "the worst open finding's severity (ok: none open)"},
    )
    app = Text(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "only devices that have this app installed (bundle id or package name)"},
    )
    seen_since = When(metadata={"description": "last seen at or after this time"})
    not_seen_since = When(metadata={"description": "never seen, or last seen before this time"})
    q = Text(
        validate=validate.Length(min=1, max=100), metadata={"description": "UDID, serial, name or model"}
    )
    sort = fields.String(
        load_default="id", validate=validate.OneOf(("id", "-id", "last_seen", "-last_seen", "name"))
    )


class DeviceSchema(Schema):
    id = fields.Integer(required=True)
    platform = fields.String(required=True)
    udid = fields.String(allow_none=True, required=True)
    serial_number = fields.String(allow_none=True, required=True)
    asset_tag = fields.String(allow_none=True, required=True)
    assigned_user = fields.String(allow_none=True, required=True)
    device_name = fields.String(allow_none=True, required=True)
    model = fields.String(allow_none=True, required=True)
    model_name = fields.String(allow_none=True, required=True)
    product_name = fields.String(allow_none=True, required=True)
    os_version = fields.String(allow_none=True, required=True)
    supervised = fields.Boolean(
        required=True,
        allow_none=True,
        attribute="is_supervised",
        metadata={"description": "IsSupervised as the device last reported it; null: never reported"},
    )
    enrollment_state = fields.String(required=True)
    org_unit_id = fields.Integer(allow_none=True, required=True)
    compliance = fields.Function(
        lambda d: _compliance(d).label,
        required=True,
        metadata={"type": "string", "enum": list(COMPLIANCE_STATES)},
    )
    compliance_severity = fields.Function(
        lambda d: _compliance(d).severity,
        required=True,
        metadata={
            "type": "string",
            "nullable": True,
            "enum": [*COMPLIANCE_SEVERITIES, None],
            "description": "worst open finding; null when never evaluated",
        },
    )
    last_seen_at = fields.DateTime(allow_none=True, required=True)
    enrolled_at = fields.DateTime(allow_none=True, required=True)


class CertificateSummarySchema(Schema):
    fingerprint_sha256 = fields.String(required=True)
    subject = fields.String(required=True)
    issuer = fields.String(required=True)
    not_after = fields.DateTime(required=True)
    revoked_at = fields.DateTime(allow_none=True, required=True)
    purpose = fields.String(required=True, metadata={"enum": ["mdm_identity", "wifi", "android_agent"]})
    bound_at = fields.DateTime(allow_none=True, required=True)


class LockStateSchema(Schema):
    """What a lock really achieved, from the device's answer (commands.incidents.lock_state)."""

    state = fields.String(
        required=True,
        metadata={
            "enum": [
                "not_sent",
                "sent",
                "displayed",
                "lost_mode_on",
                "in_lost_mode",
                "not_displayed_no_passcode",
                "display_unknown",
                "display_not_reported",
                "failed",
                "withdrawn",
            ],
            "description": "`sent`: no answer yet; `displayed`/`lost_mode_on`: acknowledged and shown; "
            "`not_displayed_no_passcode`: acknowledged but not displayed (MessageResult NoPasscodeSet)",
        },
    )
    label_ja = fields.String(required=True)
    label_en = fields.String(required=True)
    next_step_ja = fields.String(required=True, metadata={"description": "what the operator should do next"})
    next_step_en = fields.String(required=True)
    request_type = fields.String(allow_none=True, required=True)
    command_uuid = fields.String(allow_none=True, required=True)
    message_result = fields.String(
        allow_none=True, required=True, metadata={"description": "DeviceLock's MessageResult as reported"}
    )
    answered_at = fields.DateTime(allow_none=True, required=True)


class DeviceDetailSchema(DeviceSchema):
    build_version = fields.String(allow_none=True, required=True)
    imei = fields.String(
        allow_none=True, required=True, metadata={"description": "from Authenticate or DeviceInformation"}
    )
    meid = fields.String(
        allow_none=True, required=True, metadata={"description": "from Authenticate or DeviceInformation"}
    )
    created_at = fields.DateTime(required=True)
    unenrolled_at = fields.DateTime(allow_none=True, required=True)
    topic = fields.String(allow_none=True, required=True)
    push_token_present = fields.Function(
        lambda d: d.push_token is not None, required=True, metadata={"type": "boolean"}
    )
    push_error = fields.String(allow_none=True, required=True)
    push_error_at = fields.DateTime(allow_none=True, required=True)
    token_stale_at = fields.DateTime(allow_none=True, required=True)
    reenroll_allowed_until = fields.DateTime(
        allow_none=True,
        required=True,
        metadata={"description": "an administrator lets the device bind a new identity until then"},
    )
    reenroll_allowed_by = fields.String(allow_none=True, required=True)
    org_unit_path = fields.Function(
        lambda d: _unit_path(d), required=True, metadata={"type": "string", "nullable": True}
    )
    pending_commands = fields.Function(lambda d: _pending(d), required=True, metadata={"type": "integer"})
    certificates = fields.List(fields.Nested(CertificateSummarySchema), required=True)
    open_findings = fields.Function(
        lambda d: _compliance(d).open_findings,
        required=True,
        metadata={"type": "integer", "nullable": True, "description": "null when never evaluated"},
    )
    lock = fields.Function(
        lambda d: _lock(d),
        required=True,
        metadata={
            "type": "object",
            "nullable": True,
            "description": "state of the newest DeviceLock or EnableLostMode (LockStateSchema); "
            "null when none was ever sent",
        },
    )
    compliance_evaluated_at = fields.Function(
        lambda d: _iso(_compliance(d).evaluated_at),
        required=True,
        metadata={"type": "string", "format": "date-time", "nullable": True},
    )


def _compliance(device: Any) -> Any:
    # A devices list carries each row's compliance (web.queries.DeviceRow); one device reads it.
    from web.queries import UNKNOWN_COMPLIANCE, device_compliance_status

    carried = getattr(device, "compliance_status", None)
    if carried is not None:
        return carried
    session = object_session(device)
    return device_compliance_status(session, device.id) if session is not None else UNKNOWN_COMPLIANCE


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _unit_path(device: Any) -> str | None:
    from mdm.services.orgunits import path_label

    session = object_session(device)
    if device.org_unit is None or session is None:
        return None
    return path_label(session, device.org_unit)


def _lock(device: Any) -> dict[str, Any] | None:
    from commands.incidents.lock_state import device_lock_view

    session = object_session(device)
    view = device_lock_view(session, device) if session is not None else None
    return None if view is None else dict(LockStateSchema().dump(view.as_dict()))


def _pending(device: Any) -> int:
    from web.queries import pending_count

    session = object_session(device)
    return pending_count(session, device) if session is not None else 0


class DevicePageSchema(PageSchema):
    items = fields.List(fields.Nested(DeviceSchema), required=True)
    total_capped = fields.Boolean(
        required=True,
        metadata={"description": "true: more than `total` devices match (a search counts up to a limit)"},
    )


# -- commands -----------------------------------------------------------------------------------


class CommandQueueSchema(Schema):
    request_type = Text(required=True, validate=validate.Length(min=1, max=64))
    params = JsonObject(keys=fields.String(), load_default=dict)


class CommandQuerySchema(PageQuerySchema):
    device_id = Id(strict=False)
    status = fields.String(validate=validate.OneOf(CommandStatus.ALL))
    request_type = Text(validate=validate.Length(min=1, max=64))


class CommandSchema(Schema):
    uuid = fields.String(required=True)
    device_id = fields.Integer(required=True)
    request_type = fields.String(required=True)
    params = fields.Dict(required=True)
    priority = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(CommandStatus.ALL)})
    requested_by = fields.String(required=True)
    queued_at = fields.DateTime(required=True)
    sent_at = fields.DateTime(allow_none=True, required=True)
    acknowledged_at = fields.DateTime(allow_none=True, required=True)
    error_at = fields.DateTime(allow_none=True, required=True)
    not_now_at = fields.DateTime(allow_none=True, required=True)
    cancelled_at = fields.DateTime(allow_none=True, required=True)
    expired_at = fields.DateTime(allow_none=True, required=True)
    # Why the server gave up on it (a refresh unanswered after every re-push), when it did.
    expired_reason = fields.String(allow_none=True, required=True)
    repushes = fields.Integer(required=True)
    expires_at = fields.DateTime(allow_none=True, required=True)
    delivery_count = fields.Integer(required=True)
    error_chain = fields.List(fields.Raw(), allow_none=True, required=True)
    failed_at = fields.DateTime(allow_none=True, required=True)
    failure_reason = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "why the device's answer was not accepted (status failed)"},
    )
    message_result = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "DeviceLock: whether its message was shown (MessageResult)"},
    )


class ForeignCommandResultSchema(Schema):
    """A device's answer to a command Hikeshi never queued (another MDM's, before the migration).
    The answer itself is kept as received; its keys say what it is about."""

    command_uuid = fields.String(required=True)
    status = fields.String(required=True)
    answer_keys = fields.List(fields.String(), required=True)
    received_at = fields.DateTime(required=True)


class ForeignCommandResultPageSchema(PageSchema):
    items = fields.List(fields.Nested(ForeignCommandResultSchema), required=True)


class CommandPageSchema(PageSchema):
    items = fields.List(fields.Nested(CommandSchema), required=True)


class CommandTypeSchema(Schema):
    request_type = fields.String(required=True)
    description_ja = fields.String(required=True)
    description_en = fields.String(required=True)
    priority = fields.Integer(required=True)
    platforms = fields.List(fields.String(), required=True)
    requires_supervision = fields.Boolean(required=True)
    expires_after_seconds = fields.Integer(allow_none=True, required=True)
    allowed = fields.Boolean(required=True, metadata={"description": "the caller may queue it here"})


# -- org units ----------------------------------------------------------------------------------


class OrgUnitSchema(Schema):
    id = fields.Integer(required=True)
    parent_id = fields.Integer(allow_none=True, required=True)
    kind = fields.String(required=True)
    unit_type = fields.String(allow_none=True, required=True)
    name_ja = fields.String(required=True)
    name_en = fields.String(allow_none=True, required=True)
    code = fields.String(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class OrgUnitCreateSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(OrgUnitKind.ALL))
    name_ja = Text(required=True, validate=validate.Length(min=1, max=100))
    name_en = Text(allow_none=True, validate=validate.Length(max=100))
    code = Text(allow_none=True, validate=validate.Length(max=32))
    unit_type = fields.String(allow_none=True, validate=validate.OneOf(UnitType.ALL))
    parent_id = Id(allow_none=True)


class OrgUnitUpdateSchema(Schema):
    name_ja = Text(validate=validate.Length(min=1, max=100))
    name_en = Text(allow_none=True, validate=validate.Length(max=100))
    code = Text(allow_none=True, validate=validate.Length(max=32))
    unit_type = fields.String(allow_none=True, validate=validate.OneOf(UnitType.ALL))
    parent_id = Id(allow_none=True, metadata={"description": "move the unit (and its subtree) here"})


class LocationReportingSchema(Schema):
    # Strict: JSON true, false or null only (null: as the unit above says).
    location_reporting = StrictBoolean(required=True, allow_none=True)
    effective = fields.Boolean(dump_only=True)


# -- enrollment tokens --------------------------------------------------------------------------


class EnrollmentTokenSchema(Schema):
    id = fields.Integer(required=True)
    org_unit_id = fields.Integer(required=True)
    platform = fields.String(required=True)
    max_uses = fields.Integer(required=True)
    use_count = fields.Integer(required=True)
    note = fields.String(allow_none=True, required=True)
    state = fields.String(required=True, metadata={"enum": ["active", "expired", "used_up", "revoked"]})
    expires_at = fields.DateTime(required=True)
    created_at = fields.DateTime(required=True)
    created_by = fields.String(required=True)
    revoked_at = fields.DateTime(allow_none=True, required=True)
    revoked_by = fields.String(allow_none=True, required=True)


class EnrollmentTokenCreateSchema(Schema):
    org_unit_id = Id(required=True)
    platform = fields.String(load_default=TokenPlatform.APPLE, validate=validate.OneOf(TokenPlatform.ALL))
    max_uses = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=10_000))
    expires_in_hours = fields.Integer(
        load_default=24 * 7, strict=True, validate=validate.Range(min=1, max=24 * 366)
    )
    note = Text(allow_none=True, load_default=None, validate=validate.Length(max=255))


class EnrollmentTokenCreatedSchema(EnrollmentTokenSchema):
    secret = fields.String(required=True, metadata={"description": "shown once, never again"})
    enrollment_url = fields.String(required=True)
    qr_svg_url = fields.String(required=True)
    sheet_url = fields.String(required=True)


class RevokeSchema(Schema):
    reason = Text(allow_none=True, load_default=None, validate=validate.Length(max=255))


# -- users --------------------------------------------------------------------------------------


class UserSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    display_name = fields.String(required=True)
    role = fields.String(required=True)
    org_unit_id = fields.Integer(allow_none=True, required=True)
    disabled = fields.Boolean(required=True)
    must_change_password = fields.Boolean(required=True)
    totp_enabled = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)
    created_by = fields.String(required=True)
    last_login_at = fields.DateTime(allow_none=True, required=True)


class UserCreateSchema(Schema):
    username = Text(required=True, validate=validate.Length(min=2, max=64))
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in USER_ROLES]))
    display_name = Text(load_default="", validate=validate.Length(max=255))
    org_unit_id = Id(allow_none=True, load_default=None)


class UserCreatedSchema(UserSchema):
    one_time_password = fields.String(required=True, metadata={"description": "shown once"})


class UserUpdateSchema(Schema):
    role = fields.String(validate=validate.OneOf([r.value for r in USER_ROLES]))
    display_name = Text(validate=validate.Length(max=255))
    org_unit_id = Id(allow_none=True)
    disabled = StrictBoolean()


class PasswordResetSchema(Schema):
    one_time_password = fields.String(required=True)


# -- API tokens ---------------------------------------------------------------------------------


class OutOfServiceSchema(Schema):
    reason = Text(required=True, validate=validate.Length(min=1, max=500))


class ApiTokenSchema(Schema):
    id = fields.String(required=True, attribute="public_id")
    name = fields.String(required=True)
    role = fields.String(required=True)
    org_unit_id = fields.Integer(allow_none=True, required=True)
    created_by = fields.String(required=True)
    owner_user_id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "the person the token answers for"}
    )
    service_account = fields.String(
        allow_none=True, required=True, metadata={"description": "or the service account it belongs to"}
    )
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    revoked_at = fields.DateTime(allow_none=True, required=True)
    last_used_at = fields.DateTime(allow_none=True, required=True)


class ApiTokenCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(min=1, max=100))
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in TOKEN_ROLES]))
    org_unit_id = Id(allow_none=True, load_default=None)
    expires_in_days = fields.Integer(load_default=90, strict=True, validate=validate.Range(min=1, max=730))
    service_account = Text(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^[a-z0-9][a-z0-9._-]{1,63}$"),
        metadata={
            "description": "a token for this named service account (a dispatch system) instead of "
            "for yourself; a service account can never request, approve or reject a wipe"
        },
    )


class ApiTokenCreatedSchema(ApiTokenSchema):
    token = fields.String(required=True, metadata={"description": "shown once, never again"})


# -- audit --------------------------------------------------------------------------------------


class AuditQuerySchema(PageQuerySchema):
    action = Text(
        validate=validate.Length(min=1, max=64), metadata={"description": "exact, or a prefix ending in '.'"}
    )
    actor = Text(validate=validate.Length(min=1, max=255))
    target_type = Text(validate=validate.Length(min=1, max=32))
    target_id = Text(validate=validate.Length(min=1, max=128))
    since = When()
    until = When()

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError("must not be after `until`", "since")


class AuditExportQuerySchema(AuditQuerySchema):
    format = fields.String(load_default="jsonl", validate=validate.OneOf(("jsonl", "csv")))


class AuditEventSchema(Schema):
    id = fields.Integer(required=True)
    seq = fields.Integer(
        allow_none=True, required=True, metadata={"description": "place in the hash chain; null until sealed"}
    )
    occurred_at = fields.DateTime(required=True)
    actor = fields.String(required=True)
    actor_role = fields.String(required=True)
    source_ip = fields.String(allow_none=True, required=True)
    action = fields.String(required=True)
    target_type = fields.String(allow_none=True, required=True)
    target_id = fields.String(allow_none=True, required=True)
    details = fields.Dict(required=True)
    prev_hash = fields.String(allow_none=True, required=True)
    hash = fields.String(allow_none=True, required=True)


class AuditPageSchema(PageSchema):
    items = fields.List(fields.Nested(AuditEventSchema), required=True)
    total_capped = fields.Boolean(
        required=True,
        metadata={"description": "true: more than `total` events match (the trail is counted up to a limit)"},
    )


class ChainReportSchema(Schema):
    ok = fields.Boolean(required=True)
    checked = fields.Integer(required=True)
    broken_seq = fields.Integer(allow_none=True, required=True)
    broken_id = fields.Integer(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)
    unsealed = fields.Integer(
        required=True,
        metadata={"description": "events written but not yet sealed into the chain (normally seconds)"},
    )
