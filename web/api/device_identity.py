"""An administrator lets a tablet bind a new identity: `POST /api/v1/devices/<id>/reenroll-allowance`.

A UDID that is enrolled (or pending) keeps its identity: any other certificate's Authenticate for
it is an identity conflict (mdm.services.devices). When the tablet really is the same one (restored from a
backup, its profile removed without a CheckOut), an administrator allows re-enrollment for a few
hours; the next Authenticate with a new identity binds it, revokes the old ones and uses the
allowance up. The console's device page and `hikeshi devices allow-reenroll` do the same.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from mdm.doors.appctx import db_session
from mdm.services.devices import MAX_REENROLL_HOURS, allow_reenroll
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.errors import ApiError
from web.queries import visible_device
from web.rbac import Permission

blp = ApiBlueprint(
    "device_identity", __name__, url_prefix="/api/v1", description="Re-enrollment of a device's identity"
)


class ReenrollAllowanceSchema(Schema):
    hours = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_REENROLL_HOURS),
        metadata={"description": f"how long the allowance lasts (1–{MAX_REENROLL_HOURS} hours)"},
    )


class ReenrollAllowedSchema(Schema):
    device_id = fields.Integer(required=True, attribute="id")
    enrollment_state = fields.String(required=True)
    reenroll_allowed_until = fields.DateTime(required=True)
    reenroll_allowed_by = fields.String(required=True)


@blp.route(f"/devices/<{ID}:device_id>/reenroll-allowance", methods=["POST"])
@blp.arguments(ReenrollAllowanceSchema)
@blp.response(200, ReenrollAllowedSchema)
@permission(Permission.DEVICE_WRITE)
def allow_device_reenroll(body: dict[str, Any], device_id: int) -> Any:
    """Allow the device to bind a new identity within `hours` (audited; used up by the binding)."""
    principal = current_principal()
    session = db_session()
    device = visible_device(session, principal, device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}")
    allow_reenroll(session, device, hours=body["hours"], actor=principal.actor)
    session.commit()
    return device
