"""A tablet's asset tag (資産番号, the sticker HQ puts on it) and its user (the crew or person it is
issued to): what a caller on the hotline reads off the back or says first, so both are searchable.

`PATCH /api/v1/devices/<id>` sets them through mdm.services.device_labels.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from mdm.doors.appctx import db_session
from mdm.services.device_labels import (
    DeviceLabelsUpdateSchema,
    DuplicateAssetTag,
    set_device_labels,
)
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.errors import ApiError
from web.queries import visible_device
from web.rbac import Permission

blp = ApiBlueprint(
    "device_labels", __name__, url_prefix="/api/v1", description="Asset tag and user of a device"
)


class DeviceLabelsSchema(Schema):
    id = fields.Integer(required=True)
    serial_number = fields.String(allow_none=True, required=True)
    device_name = fields.String(allow_none=True, required=True)
    asset_tag = fields.String(allow_none=True, required=True)
    assigned_user = fields.String(allow_none=True, required=True)


@blp.route(f"/devices/<{ID}:device_id>", methods=["PATCH"])
@blp.arguments(DeviceLabelsUpdateSchema)
@blp.response(200, DeviceLabelsSchema)
@permission(Permission.DEVICE_WRITE)
def update_device_labels(body: dict[str, Any], device_id: int) -> Any:
    """Set a device's asset tag (資産番号) and user.

    Blank or null clears one; 409 `duplicate_asset_tag` when another device carries the tag."""
    principal = current_principal()
    session = db_session()
    device = visible_device(session, principal, device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}")
    try:
        set_device_labels(session, device, body, actor=principal.actor)
    except DuplicateAssetTag as exc:
        session.rollback()
        raise ApiError(409, str(exc), code="duplicate_asset_tag", fields={"asset_tag": [str(exc)]}) from exc
    session.commit()
    return device
