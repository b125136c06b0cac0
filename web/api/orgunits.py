"""Org units: the HQ → station → branch → unit tree."""

from __future__ import annotations

from typing import Any

from mdm.doors.appctx import db_session
from mdm.ground.models import OrgUnit
from mdm.services.android_channel.location_reporting import location_reporting, set_location_reporting
from mdm.services.orgunits import OrgUnitError, create_unit, get_unit, move_unit, update_unit
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.api.schemas import LocationReportingSchema, OrgUnitCreateSchema, OrgUnitSchema, OrgUnitUpdateSchema
from web.errors import ApiError, field_error
from web.queries import visible_unit, visible_units
from web.rbac import Permission

blp = ApiBlueprint("org_units", __name__, url_prefix="/api/v1", description="Org units")


def _unit_or_404(unit_id: int) -> OrgUnit:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        raise ApiError(404, f"no org unit with id {unit_id}")
    return unit


def _parent_in_scope(parent_id: int | None) -> OrgUnit | None:
    """The new parent, which a scoped principal must see; nobody scoped may create a root."""
    principal = current_principal()
    if parent_id is None:
        if principal.scoped:
            raise field_error("parent_id", "a scoped user can only add units inside its own unit")
        return None
    parent = visible_unit(db_session(), principal, parent_id)
    if parent is None:
        raise field_error("parent_id", f"no org unit with id {parent_id}")
    return parent


@blp.route("/org-units", methods=["GET"])
@blp.response(200, OrgUnitSchema(many=True))
@permission(Permission.ORGUNIT_READ)
def list_org_units() -> Any:
    """Every visible unit, parents before children."""
    return visible_units(db_session(), current_principal())


@blp.route("/org-units", methods=["POST"])
@blp.arguments(OrgUnitCreateSchema)
@blp.response(201, OrgUnitSchema)
@permission(Permission.ORGUNIT_WRITE)
def create_org_unit(body: dict[str, Any]) -> Any:
    """Create a unit under `parent_id` (an HQ has none)."""
    _parent_in_scope(body.get("parent_id"))
    session = db_session()
    try:
        unit = create_unit(session, body, actor=current_principal().actor)
    except OrgUnitError as exc:
        raise ApiError(400, str(exc), fields=exc.fields) from exc
    session.commit()
    return unit


@blp.route(f"/org-units/<{ID}:unit_id>", methods=["GET"])
@blp.response(200, OrgUnitSchema)
@permission(Permission.ORGUNIT_READ)
def get_org_unit(unit_id: int) -> Any:
    """One unit."""
    return _unit_or_404(unit_id)


@blp.route(f"/org-units/<{ID}:unit_id>", methods=["PATCH"])
@blp.arguments(OrgUnitUpdateSchema, required=False)
@blp.response(200, OrgUnitSchema)
@permission(Permission.ORGUNIT_WRITE)
def update_org_unit(body: dict[str, Any], unit_id: int) -> Any:
    """Rename, recode or move a unit (with everything below it)."""
    principal = current_principal()
    unit = _unit_or_404(unit_id)
    session = db_session()
    changes = {k: v for k, v in body.items() if k != "parent_id"}
    try:
        if changes:
            update_unit(session, unit, changes, actor=principal.actor)
        if "parent_id" in body:
            if principal.scoped and unit.id == principal.org_unit_id:
                raise field_error("parent_id", "you cannot move the unit your own scope starts at")
            new_parent = _parent_in_scope(body["parent_id"])
            move_unit(session, unit, new_parent, actor=principal.actor)
    except OrgUnitError as exc:
        raise ApiError(400, str(exc), fields=exc.fields) from exc
    session.commit()
    return get_unit(session, unit.id)


@blp.route(f"/org-units/<{ID}:unit_id>/android-location-reporting", methods=["PUT"])
@blp.arguments(LocationReportingSchema)
@blp.response(200, LocationReportingSchema)
@permission(Permission.ORGUNIT_WRITE)
def put_android_location_reporting(body: dict[str, Any], unit_id: int) -> Any:
    """Whether the unit's Android tablets report their location with their inventory (true,
    false, or null: as the unit above says). The agents get it with their next sync."""
    principal = current_principal()
    unit = _unit_or_404(unit_id)
    session = db_session()
    set_location_reporting(session, unit, body["location_reporting"], actor=principal.actor)
    session.commit()
    return {
        "location_reporting": unit.android_location_reporting,
        "effective": location_reporting(session, unit.id),
    }
