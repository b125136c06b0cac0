"""Marshmallow schemas for console forms: the same validation as the API, errors per field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from web.api.schemas import Id, Text
from web.rbac import TOKEN_ROLES, USER_ROLES


class FormSchema(Schema):
    """Forms send "" for empty inputs: treat them as absent, and ignore unknown fields."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _blank_is_missing(self, data: Mapping[str, Any], **_kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}


def load_form(schema: Schema, form: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(clean data, {}) or ({}, errors by field)."""
    try:
        return dict(schema.load(dict(form))), {}
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_form": exc.messages}
        return {}, {k: v if isinstance(v, list) else [str(v)] for k, v in messages.items()}


class LoginForm(FormSchema):
    username = Text(required=True, validate=validate.Length(min=1, max=64))
    password = Text(required=True, validate=validate.Length(min=1, max=1024))
    # Only while the name is locked: password and a TOTP code together still sign in.
    code = Text(validate=validate.Length(max=32))


class CodeForm(FormSchema):
    code = Text(validate=validate.Length(min=1, max=32))
    recovery_code = Text(validate=validate.Length(min=1, max=32))


class PasswordChangeForm(FormSchema):
    current_password = Text(required=True, validate=validate.Length(max=1024))
    new_password = Text(required=True, validate=validate.Length(max=1024))
    new_password_again = Text(required=True, validate=validate.Length(max=1024))


class UserCreateForm(FormSchema):
    username = Text(required=True, validate=validate.Length(min=2, max=64))
    display_name = Text(load_default="", validate=validate.Length(max=255))
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in USER_ROLES]))
    org_unit_id = Id(load_default=None, strict=False)


class UserUpdateForm(FormSchema):
    display_name = Text(load_default="", validate=validate.Length(max=255))
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in USER_ROLES]))
    org_unit_id = Id(load_default=None, strict=False)


class ApiTokenForm(FormSchema):
    name = Text(required=True, validate=validate.Length(min=1, max=100))
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in TOKEN_ROLES]))
    org_unit_id = Id(load_default=None, strict=False)
    expires_in_days = fields.Integer(load_default=90, validate=validate.Range(min=1, max=730))
    # Empty: a token of one's own (works while one's account does). Set: a dispatch system's.
    service_account = Text(load_default=None, validate=validate.Regexp(r"^[a-z0-9][a-z0-9._-]{1,63}$|^$"))


class EnrollmentTokenForm(FormSchema):
    org_unit_id = Id(required=True, strict=False)
    platform = fields.String(load_default="apple", validate=validate.OneOf(("apple", "android")))
    max_uses = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    expires_in_days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=366))
    note = Text(load_default=None, validate=validate.Length(max=255))


class OrgUnitForm(FormSchema):
    kind = fields.String(required=True)
    name_ja = Text(required=True, validate=validate.Length(min=1, max=100))
    name_en = Text(load_default=None, validate=validate.Length(max=100))
    code = Text(load_default=None, validate=validate.Length(max=32))
    unit_type = Text(load_default=None, validate=validate.Length(max=32))
    parent_id = Id(load_default=None, strict=False)


class OrgUnitEditForm(FormSchema):
    name_ja = Text(required=True, validate=validate.Length(min=1, max=100))
    name_en = Text(load_default=None, validate=validate.Length(max=100))
    code = Text(load_default=None, validate=validate.Length(max=32))
    parent_id = Id(load_default=None, strict=False)


class CommandForm(FormSchema):
    request_type = Text(required=True, validate=validate.Length(min=1, max=64))
    # Checked once, by the lock command's own schema (commands.lock_screen).
    message = Text()
    phone_number = Text()
    params_json = Text(validate=validate.Length(max=10_000))


class DeviceFilterForm(FormSchema):
    unit_id = Id(strict=False)
    platform = fields.String(validate=validate.OneOf(("apple", "android")))
    status = fields.String(validate=validate.OneOf(("pending", "enrolled", "unenrolled", "retired")))
    compliance = fields.String(validate=validate.OneOf(("compliant", "noncompliant", "unknown")))
    seen_within_hours = fields.Integer(validate=validate.Range(min=1, max=24 * 365))
    not_seen_for_hours = fields.Integer(validate=validate.Range(min=1, max=24 * 365))
    q = Text(validate=validate.Length(max=100))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


class AuditFilterForm(FormSchema):
    action = Text(validate=validate.Length(max=64))
    actor = Text(validate=validate.Length(max=255))
    target_type = Text(validate=validate.Length(max=32))
    target_id = Text(validate=validate.Length(max=128))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
