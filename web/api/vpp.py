"""Apps and Books (volume purchase), read-only: the content token's organisation, location and
expiry (never the token), and the location's apps with their license counts. Changes go
through the console or `hikeshi vpp`, where the upload is a file."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields
from sqlalchemy import select

from mdm.doors.appctx import db_session
from mdm.ground.models import VppAsset
from mdm.services.vpp.token import active_token, expiry_warning
from web.api.base import ApiBlueprint, permission
from web.rbac import Permission

blp = ApiBlueprint("vpp", __name__, url_prefix="/api/v1", description="Apps and Books (volume purchase)")


class VppTokenSchema(Schema):
    org_name = fields.String(required=True)
    location_name = fields.String(allow_none=True, required=True)
    expires_at = fields.DateTime(required=True)
    last_sync_at = fields.DateTime(allow_none=True, required=True)
    last_error = fields.String(allow_none=True, required=True)
    warning = fields.String(allow_none=True, required=True, metadata={"description": "expiry or location"})


class VppAssetSchema(Schema):
    adam_id = fields.String(required=True)
    pricing_param = fields.String(required=True)
    product_type = fields.String(allow_none=True, required=True)
    device_assignable = fields.Boolean(required=True)
    total_count = fields.Integer(required=True)
    assigned_count = fields.Integer(required=True)
    available_count = fields.Integer(required=True)


class VppStatusSchema(Schema):
    token = fields.Nested(VppTokenSchema, allow_none=True, required=True)
    assets = fields.List(fields.Nested(VppAssetSchema), required=True)


@blp.route("/vpp", methods=["GET"])
@blp.response(200, VppStatusSchema)
@permission(Permission.SETTINGS_READ)
def status() -> Any:
    """The content token (never its secret) and the apps with total / assigned / available counts."""
    session = db_session()
    token = active_token(session)
    warning = expiry_warning(token)
    return {
        "token": None
        if token is None
        else {
            "org_name": token.org_name,
            "location_name": token.location_name,
            "expires_at": token.expires_at,
            "last_sync_at": token.last_sync_at,
            "last_error": token.last_error,
            "warning": warning.en if warning else None,
        },
        "assets": list(session.scalars(select(VppAsset).order_by(VppAsset.adam_id))),
    }
