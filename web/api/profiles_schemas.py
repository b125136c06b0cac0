"""Marshmallow schemas of the profiles API (web.api.profiles).

The profile spec itself is validated by profiles.spec (the one place payload settings are checked);
the request schemas here only make sure the body is a storable JSON object of the right outline,
so a NUL or a lone surrogate is a 400 here and never reaches the database.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from profiles.payloads import kind_names
from profiles.rendering import PLATFORMS
from profiles.templates import TEMPLATES
from web.api.schemas import MAX_ID, Id, Text

# A spec may carry certificates (PEM); the API body limit (1 MiB) bounds it anyway.
MAX_SPEC_CHARS = 900_000


def _check_value(value: Any, depth: int = 0) -> None:
    if depth > 12:
        raise ValidationError("nested too deeply")
    if isinstance(value, str):
        for ch in value:
            code = ord(ch)
            if code == 0 or 0xD800 <= code <= 0xDFFF:
                raise ValidationError("contains a character that cannot be stored (NUL or lone surrogate)")
    elif isinstance(value, dict):
        for key, inner in value.items():
            _check_value(str(key), depth + 1)
            _check_value(inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            _check_value(inner, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise ValidationError("number out of range")
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValidationError("number out of range")


class PayloadSettings(fields.Dict):
    """A payload's settings: any JSON object; its kind's schema (profiles.payloads) checks it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)
        _check_value(result)
        if len(str(result)) > MAX_SPEC_CHARS:
            raise ValidationError("too large")
        return result


class PayloadInSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(kind_names()))
    key = Text(validate=validate.Length(min=1, max=64))
    settings = PayloadSettings(
        keys=fields.String(),
        required=True,
        metadata={"description": "the payload kind's settings (profiles.payloads)"},
    )


class ProfileSpecInSchema(Schema):
    """A profile spec as an administrator writes it (profiles.spec)."""

    identifier = Text(required=True, validate=validate.Length(min=1, max=200))
    name_ja = Text(required=True, validate=validate.Length(min=1, max=128))
    name_en = Text(required=True, validate=validate.Length(min=1, max=128))
    description = Text(validate=validate.Length(max=2000))
    payloads = fields.List(
        fields.Nested(PayloadInSchema), required=True, validate=validate.Length(min=1, max=50)
    )


class FromTemplateSchema(Schema):
    template = Text(required=True, validate=validate.OneOf(sorted(TEMPLATES)))
    identifier = Text(required=True, validate=validate.Length(min=1, max=200))
    name_ja = Text(validate=validate.Length(min=1, max=128))
    name_en = Text(validate=validate.Length(min=1, max=128))


class AssignSchema(Schema):
    org_unit_id = Id(required=True)


class PreviewQuerySchema(Schema):
    version = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "a saved version; the current one when left out"},
    )


class ExportQuerySchema(Schema):
    platform = fields.String(load_default="apple", validate=validate.OneOf(PLATFORMS))


# -- responses ----------------------------------------------------------------------------------


class PayloadOutSchema(Schema):
    kind = fields.String(required=True)
    key = fields.String(required=True)
    settings = fields.Dict(required=True)


class SpecOutSchema(Schema):
    identifier = fields.String(required=True)
    name_ja = fields.String(required=True)
    name_en = fields.String(required=True)
    description = fields.String(required=True)
    payloads = fields.List(fields.Nested(PayloadOutSchema), required=True)


class ValidatedSchema(Schema):
    spec = fields.Nested(SpecOutSchema, required=True)


class PayloadSummarySchema(Schema):
    kind = fields.String(required=True)
    key = fields.String(required=True)
    summary = fields.String(required=True)


class ProfileSchema(Schema):
    id = fields.Integer(required=True)
    identifier = fields.String(required=True)
    name_ja = fields.String(required=True)
    name_en = fields.String(required=True)
    description = fields.String(required=True)
    version = fields.Integer(required=True)
    payloads = fields.List(fields.Nested(PayloadSummarySchema), required=True)
    assignment_count = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class VersionSchema(Schema):
    version = fields.Integer(required=True)
    created_by = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class AssignmentSchema(Schema):
    id = fields.Integer(required=True)
    profile_id = fields.Integer(required=True)
    org_unit_id = fields.Integer(required=True)
    org_unit_name = fields.String(required=True)
    assigned_by = fields.String(required=True)
    assigned_at = fields.DateTime(required=True)


class ReconcileSchema(Schema):
    devices = fields.Integer(required=True, metadata={"description": "enrolled devices considered"})
    installs = fields.Integer(required=True, metadata={"description": "InstallProfile commands queued"})
    removals = fields.Integer(required=True, metadata={"description": "RemoveProfile commands queued"})
    cancelled = fields.Integer(required=True, metadata={"description": "undelivered commands cancelled"})


class ProfileDetailSchema(ProfileSchema):
    spec = fields.Nested(SpecOutSchema, required=True)
    versions = fields.List(fields.Nested(VersionSchema), required=True)
    assignments = fields.List(fields.Nested(AssignmentSchema), required=True)
    secrets_redacted = fields.Boolean(
        required=True,
        metadata={"description": "The spec holds secrets (Wi-Fi passwords), shown to nobody as ********"},
    )
    reconcile = fields.Nested(
        ReconcileSchema,
        allow_none=True,
        metadata={"description": "after an update: what the new version queued"},
    )


class AssignedSchema(Schema):
    assignment = fields.Nested(AssignmentSchema, allow_none=True, required=True)
    reconcile = fields.Nested(ReconcileSchema, required=True)


class ReportItemSchema(Schema):
    payload = fields.String(required=True)
    field = fields.String(required=True)
    text = fields.String(required=True)


class RenderingSchema(Schema):
    content = fields.Raw(
        required=True,
        metadata={"description": "Apple: the unsigned plist as text; Android: the Policy object"},
    )
    unsupported = fields.List(fields.Nested(ReportItemSchema), required=True)
    notes = fields.List(fields.Nested(ReportItemSchema), required=True)


class PreviewSchema(Schema):
    profile_id = fields.Integer(required=True)
    version = fields.Integer(required=True)
    apple = fields.Nested(RenderingSchema, required=True)
    android = fields.Nested(RenderingSchema, required=True)


class TemplateSchema(Schema):
    slug = fields.String(required=True)
    name_ja = fields.String(required=True)
    name_en = fields.String(required=True)
    description = fields.String(required=True)
    spec = fields.Nested(SpecOutSchema, required=True)


class DeviceProfileStateSchema(Schema):
    identifier = fields.String(required=True)
    profile_id = fields.Integer(allow_none=True, required=True)
    name = fields.String(allow_none=True, required=True)
    foreign = fields.Boolean(required=True, metadata={"description": "installed, but not by Hikeshi"})
    desired_version = fields.Integer(allow_none=True, required=True)
    installed_version = fields.Integer(allow_none=True, required=True)
    pending_action = fields.String(allow_none=True, required=True)
    pending_version = fields.Integer(allow_none=True, required=True)
    last_verified_at = fields.DateTime(allow_none=True, required=True)
    last_error = fields.String(allow_none=True, required=True)
