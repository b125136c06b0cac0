"""Who am I: the caller's identity, role and permissions."""

from __future__ import annotations

from typing import Any

from web.api.auth import current_principal
from web.api.base import ApiBlueprint, permission
from web.api.schemas import MeSchema
from web.rbac import Permission

blp = ApiBlueprint("me", __name__, url_prefix="/api/v1", description="The caller")


@blp.route("/me", methods=["GET"])
@blp.response(200, MeSchema)
@permission(Permission.SELF_READ)
def me() -> Any:
    """The token's name, role, scope and permissions."""
    principal = current_principal()
    return {
        "kind": principal.kind,
        "name": principal.name,
        "role": principal.role,
        "org_unit_id": principal.org_unit_id,
        "permissions": sorted(p.value for p in principal.permissions),
    }
