"""A tablet's asset tag (資産番号, the sticker HQ puts on it) and its user (the crew or person it is
issued to): validated and set here, for the API, the console and the CLI alike."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validates_schema
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Device

LIMITS = {"asset_tag": 64, "assigned_user": 128}


class DuplicateAssetTag(ValueError):
    """Another device already carries this asset tag (compared without regard to case)."""

    def __init__(self, asset_tag: str) -> None:
        super().__init__(f"asset tag {asset_tag!r} is already on another device")


class Label(fields.String):
    """Trimmed text on one line; blank (or null) clears the label."""

    # marshmallow types a String's value as str; a blank label is None by design (it clears the label).
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise ValidationError("must be one line of printable text")
        limit = LIMITS.get(attr or "", 255)
        if len(text) > limit:
            raise ValidationError(f"at most {limit} characters")
        return text or None


class DeviceLabelsUpdateSchema(Schema):
    asset_tag = Label(
        allow_none=True,
        metadata={
            "description": "資産番号 on HQ's sticker; unique; blank or null clears it",
            "maxLength": 64,
        },
    )
    assigned_user = Label(
        allow_none=True,
        metadata={
            "description": "crew or person the tablet is issued to (e.g. 救急3隊 隊長)",
            "maxLength": 128,
        },
    )

    @validates_schema
    def _something(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("give asset_tag and/or assigned_user", "_schema")


def set_device_labels(
    session: Session, device: Device, changes: dict[str, str | None], *, actor: Actor
) -> bool:
    """Set the asset tag and/or user (None clears); audited with old and new values. Never commits.

    Returns whether anything changed. Raises DuplicateAssetTag before writing anything.
    """
    tag = changes.get("asset_tag")
    if "asset_tag" in changes and tag is not None:
        other = session.scalar(
            select(Device.id)
            .where(func.lower(Device.asset_tag) == tag.lower(), Device.id != device.id)
            .limit(1)
        )
        if other is not None:
            raise DuplicateAssetTag(tag)
    diff = {
        name: {"old": getattr(device, name), "new": value}
        for name, value in changes.items()
        if name in LIMITS and getattr(device, name) != value
    }
    if not diff:
        return False
    for name, change in diff.items():
        setattr(device, name, change["new"])
    try:
        # A concurrent writer of the same tag trips the unique constraint here, not at commit;
        # the caller rolls back.
        session.flush()
    except IntegrityError as exc:
        raise DuplicateAssetTag(str(tag)) from exc
    record_event(session, actor, "device.labels_updated", "device", device.id, diff)
    return True
