"""Restrictions: device functions (camera, screenshots, AirDrop, USB ...) and which apps may run.

Every setting is optional and a missing one means "not managed": the profile leaves the platform's
own default in place. `allow_*` settings say whether the user may use the function.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from profiles.payloads.common import PayloadKind, StrictBoolean, app_list, duplicate_app_errors

BOOLEAN_SETTINGS = (
    "allow_camera",
    "allow_screenshots",
    "allow_app_installation",
    "allow_app_removal",
    "allow_app_store",
    "allow_in_app_purchases",
    "allow_airdrop",
    "allow_bluetooth_modification",
    "allow_account_modification",
    "allow_erase_content_and_settings",
)

# allowed: no USB restriction. no_file_transfer: no USB storage or file transfer to a computer,
# accessories (keyboards, card readers) still work. no_data: no USB data at all, charging only.
USB_DATA_ACCESS = ("allowed", "no_file_transfer", "no_data")

APP_LISTS = ("app_allow_list", "app_block_list", "required_apps")


class RestrictionsSchema(Schema):
    allow_camera = StrictBoolean()
    allow_screenshots = StrictBoolean()
    allow_app_installation = StrictBoolean()
    allow_app_removal = StrictBoolean()
    allow_app_store = StrictBoolean()
    allow_in_app_purchases = StrictBoolean()
    allow_airdrop = StrictBoolean()
    allow_bluetooth_modification = StrictBoolean()
    allow_account_modification = StrictBoolean()
    allow_erase_content_and_settings = StrictBoolean()
    usb_data_access = fields.String(validate=validate.OneOf(USB_DATA_ACCESS))
    # Only these apps may run (plus the OS itself) ...
    app_allow_list = app_list(validate=validate.Length(min=1, max=500))
    # ... or every app except these.
    app_block_list = app_list(validate=validate.Length(min=1, max=500))
    # Installed and kept installed by the MDM.
    required_apps = app_list(validate=validate.Length(max=200))

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        if not data:
            raise ValidationError("A restrictions payload must set at least one restriction.")
        if "app_allow_list" in data and "app_block_list" in data:
            message = "Use an app allow list or an app block list, not both."
            errors["app_allow_list"] = [message]
            errors["app_block_list"] = [message]
        for name in APP_LISTS:
            duplicates = duplicate_app_errors(data.get(name, []))
            if duplicates:
                errors.setdefault(name, []).extend(duplicates)
        blocked = _ids(data.get("app_block_list", []))
        clash = sorted(_ids(data.get("required_apps", [])) & blocked)
        if clash:
            errors.setdefault("required_apps", []).append(
                f"Required apps cannot also be blocked: {', '.join(clash)}."
            )
        if errors:
            raise ValidationError(errors)

    @post_load
    def _plain(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return dict(data)


def _ids(apps: list[dict[str, Any]]) -> set[str]:
    return {value for app in apps for key in ("bundle_id", "package_name") if (value := app.get(key))}


KIND = PayloadKind(
    name="restrictions",
    schema=RestrictionsSchema,
    title_ja="機能制限",
    title_en="Restrictions",
    multiple=False,
)
