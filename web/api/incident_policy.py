"""Per org unit: "wipe automatically N hours after the call if the tablet is not recovered" (issue #6
item 4), off by default, with a reminder to approvers before it fires. A unit without a policy of its
own follows the nearest unit above it that has one (a station's policy covers its companies).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.incidents import IncidentInputError, policy_for_unit, set_incident_policy
from mdm.doors.appctx import db_session
from mdm.ground.models import OrgUnit
from mdm.ground.models.incident import IncidentPolicy
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.errors import ApiError
from web.queries import visible_unit
from web.rbac import Permission

blp = ApiBlueprint(
    "incident_policy",
    __name__,
    url_prefix="/api/v1",
    description="Auto-wipe policy per org unit (off by default)",
)

# A month: beyond that an unrecovered tablet is a decision for people, not a timer.
MAX_HOURS = 720
MAX_REMIND_HOURS = 168
DEFAULT_REMIND_HOURS = 2


def default_remind_hours(auto_wipe_after_hours: int | None) -> int:
    """Two hours' notice, or less when the delay itself is shorter."""
    if auto_wipe_after_hours is None:
        return DEFAULT_REMIND_HOURS
    return min(DEFAULT_REMIND_HOURS, auto_wipe_after_hours - 1)


class IncidentPolicyUpdateSchema(Schema):
    auto_wipe_after_hours = fields.Integer(
        required=True,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_HOURS),
        metadata={"description": "hours after the call; null turns auto-wipe off for this unit"},
    )
    remind_before_hours = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=MAX_REMIND_HOURS),
        metadata={"description": "remind approvers this many hours before the wipe (default 2)"},
    )

    @validates_schema
    def _reminder_before_wipe(self, data: dict[str, Any], **_kwargs: Any) -> None:
        hours, remind = data.get("auto_wipe_after_hours"), data.get("remind_before_hours")
        if hours is not None and remind is not None and remind >= hours:
            raise ValidationError("must be less than auto_wipe_after_hours", "remind_before_hours")


class PolicyValuesSchema(Schema):
    org_unit_id = fields.Integer(required=True)
    auto_wipe_after_hours = fields.Integer(allow_none=True, required=True)
    remind_before_hours = fields.Integer(required=True)
    updated_by = fields.String(required=True)
    updated_at = fields.DateTime(required=True)


class IncidentPolicySchema(Schema):
    org_unit_id = fields.Integer(required=True)
    own = fields.Nested(
        PolicyValuesSchema,
        allow_none=True,
        required=True,
        metadata={"description": "the unit's own policy; null when it has none"},
    )
    effective = fields.Nested(
        PolicyValuesSchema,
        allow_none=True,
        required=True,
        metadata={"description": "what applies: the own policy or the nearest one above; null: off"},
    )
    auto_wipe_enabled = fields.Boolean(required=True)


def policy_view(session: Session, unit: OrgUnit) -> dict[str, Any]:
    own = session.scalars(select(IncidentPolicy).where(IncidentPolicy.org_unit_id == unit.id)).first()
    effective = policy_for_unit(session, unit.id)
    return {
        "org_unit_id": unit.id,
        "own": own,
        "effective": effective,
        "auto_wipe_enabled": effective is not None and effective.auto_wipe_after_hours is not None,
    }


def _unit_or_404(unit_id: int) -> OrgUnit:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        raise ApiError(404, f"no org unit with id {unit_id}")
    return unit


@blp.route(f"/org-units/<{ID}:unit_id>/incident-policy", methods=["GET"])
@blp.response(200, IncidentPolicySchema)
@permission(Permission.INCIDENT_READ)
def get_incident_policy(unit_id: int) -> Any:
    """The unit's auto-wipe policy and the one that applies to it (its own or inherited)."""
    return policy_view(db_session(), _unit_or_404(unit_id))


@blp.route(f"/org-units/<{ID}:unit_id>/incident-policy", methods=["PUT"])
@blp.arguments(IncidentPolicyUpdateSchema)
@blp.response(200, IncidentPolicySchema)
@permission(Permission.ORGUNIT_WRITE)
def put_incident_policy(body: dict[str, Any], unit_id: int) -> Any:
    """Set the unit's auto-wipe delay in hours (1–720), or null for off.

    Approvers are reminded `remind_before_hours` before it fires. Applies to the units below unless
    they have their own."""
    principal = current_principal()
    unit = _unit_or_404(unit_id)
    session = db_session()
    hours = body["auto_wipe_after_hours"]
    remind = body.get("remind_before_hours", default_remind_hours(hours))
    try:
        set_incident_policy(
            session, unit, auto_wipe_after_hours=hours, remind_before_hours=remind, actor=principal.actor
        )
    except IncidentInputError as exc:
        session.rollback()
        raise ApiError(400, str(exc), fields=exc.fields) from exc
    session.commit()
    return policy_view(session, unit)
