"""The compliance policy ("alert rules") per org unit and the fleet default (issue #15 item 9).

A unit's own values override what it inherits from the units above it and the default row; a value
of null inherits. Findings from these rules raise the compliance alerts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.orm import Session

from mdm.doors.appctx import db_session, settings
from mdm.ground.models import OrgUnit
from mdm.services.unit_policy import (
    POLICY_FIELDS,
    policy_input_problems,
    policy_layers,
    set_unit_policy,
)
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.api.schemas import StrictBoolean
from web.errors import ApiError
from web.queries import visible_unit
from web.rbac import Permission

blp = ApiBlueprint(
    "compliance_policy",
    __name__,
    url_prefix="/api/v1",
    description="Compliance policy (the rules behind compliance alerts) per org unit and fleet default",
)

MAX_HOURS = 8760  # a year
MAX_DAYS = 3650  # ten years


def _os_version(value: str) -> None:
    problems = policy_input_problems({"minimum_os_version": value})
    if problems:
        raise ValidationError(problems["minimum_os_version"])


def _patch_level(value: str) -> None:
    problems = policy_input_problems({"minimum_android_security_patch": value})
    if problems:
        raise ValidationError(problems["minimum_android_security_patch"])


class CompliancePolicyUpdateSchema(Schema):
    """Only the fields given change; null makes a field inherit again."""

    minimum_os_version = fields.String(
        allow_none=True,
        validate=_os_version,
        metadata={
            "description": "oldest iOS/iPadOS version accepted, e.g. 17.4",
            "pattern": r"^\d{1,3}\.\d{1,3}(\.\d{1,3})?$",
        },
    )
    offline_limit_hours = fields.Integer(
        allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_HOURS)
    )
    require_supervision = StrictBoolean(allow_none=True, metadata={"description": "true or false"})
    inventory_interval_hours = fields.Integer(
        allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_HOURS)
    )
    certificate_warning_days = fields.Integer(
        allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_DAYS)
    )
    minimum_android_security_patch = fields.String(
        allow_none=True,
        validate=_patch_level,
        metadata={"description": "oldest Android security patch level accepted, YYYY-MM-DD"},
    )

    @validates_schema
    def _something(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("give at least one policy field", "_schema")


class CompliancePolicyValuesSchema(Schema):
    minimum_os_version = fields.String(allow_none=True, required=True)
    offline_limit_hours = fields.Integer(allow_none=True, required=True)
    require_supervision = fields.Boolean(allow_none=True, required=True)
    inventory_interval_hours = fields.Integer(allow_none=True, required=True)
    certificate_warning_days = fields.Integer(allow_none=True, required=True)
    minimum_android_security_patch = fields.String(allow_none=True, required=True)


class CompliancePolicySchema(Schema):
    org_unit_id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "null: the fleet default row"}
    )
    own = fields.Nested(
        CompliancePolicyValuesSchema,
        required=True,
        metadata={"description": "the values stored for this unit; null: inherited"},
    )
    inherited = fields.Nested(
        CompliancePolicyValuesSchema,
        required=True,
        metadata={"description": "what the unit would get without its own values"},
    )
    effective = fields.Nested(
        CompliancePolicyValuesSchema, required=True, metadata={"description": "what applies"}
    )


def compliance_policy_view(session: Session, org_unit_id: int | None) -> dict[str, Any]:
    layers = policy_layers(
        session, org_unit_id, default_inventory_interval_hours=settings().inventory_interval_hours
    )
    return {
        "org_unit_id": org_unit_id,
        "own": layers.own,
        "inherited": asdict(layers.inherited),
        "effective": asdict(layers.effective),
    }


def _store(org_unit_id: int | None, body: dict[str, Any]) -> dict[str, Any]:
    session = db_session()
    values = {name: body[name] for name in POLICY_FIELDS if name in body}
    try:
        set_unit_policy(session, current_principal().actor, org_unit_id, **values)
    except ValueError as exc:
        session.rollback()
        raise ApiError(400, str(exc)) from exc
    session.commit()
    return compliance_policy_view(session, org_unit_id)


def _unit_or_404(unit_id: int) -> OrgUnit:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        raise ApiError(404, f"no org unit with id {unit_id}")
    return unit


@blp.route(f"/org-units/<{ID}:unit_id>/compliance-policy", methods=["GET"])
@blp.response(200, CompliancePolicySchema)
@permission(Permission.INCIDENT_READ)
def get_compliance_policy(unit_id: int) -> Any:
    """The unit's own compliance values, what it inherits and what applies."""
    return compliance_policy_view(db_session(), _unit_or_404(unit_id).id)


@blp.route(f"/org-units/<{ID}:unit_id>/compliance-policy", methods=["PUT"])
@blp.arguments(CompliancePolicyUpdateSchema)
@blp.response(200, CompliancePolicySchema)
@permission(Permission.ORGUNIT_WRITE)
def put_compliance_policy(body: dict[str, Any], unit_id: int) -> Any:
    """Change the unit's own values (the fields given; null inherits). Applies to the units below
    unless they set their own. Audited as compliance.policy_changed."""
    return _store(_unit_or_404(unit_id).id, body)


@blp.route("/compliance-policy/default", methods=["GET"])
@blp.response(200, CompliancePolicySchema)
@permission(Permission.INCIDENT_READ)
def get_default_compliance_policy() -> Any:
    """The fleet default row: what every unit gets unless it or a unit above sets a value."""
    return compliance_policy_view(db_session(), None)


@blp.route("/compliance-policy/default", methods=["PUT"])
@blp.arguments(CompliancePolicyUpdateSchema)
@blp.response(200, CompliancePolicySchema)
@permission(Permission.ORGUNIT_WRITE)
def put_default_compliance_policy(body: dict[str, Any]) -> Any:
    """Change the fleet default (the fields given; null returns to the built-in default).

    Only an administrator without a unit scope: the default covers every station."""
    if current_principal().scoped:
        raise ApiError(403, "the fleet default covers every unit; a scoped user cannot change it")
    return _store(None, body)
