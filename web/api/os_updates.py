"""OS updates (issue #21 item 4): each org unit's update policy (own, inherited, effective), and
each Apple tablet's OS version, target, due moment, update status and why it is behind.

A policy change is audited (os_update.policy_changed) and applied at once to the tablets of the
unit and the units below it (declarations re-sent, or the update commands queued); the scheduler
keeps applying it afterwards.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.orm import Session

from mdm.doors.appctx import command_context, db_session
from mdm.services.osupdates import policy as update_policy
from mdm.services.osupdates.enforcement import sync_fleet, units_below
from mdm.services.osupdates.report import REASONS, device_state, fleet_states
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.errors import ApiError
from web.queries import visible_device, visible_unit
from web.rbac import Permission

blp = ApiBlueprint(
    "os_updates",
    __name__,
    url_prefix="/api/v1",
    description="OS updates: per-unit update policy, each tablet's version, target and why it is behind",
)


class WindowSchema(Schema):
    start = fields.String(required=True, metadata={"description": "local HH:MM"})
    end = fields.String(required=True, metadata={"description": "local HH:MM (before start: spans midnight)"})


class UpdatePolicyUpdateSchema(Schema):
    """Only the fields given change; null makes a field inherit again."""

    target = fields.String(
        allow_none=True,
        metadata={"description": 'a version like 17.6 or 17.6.1, or "latest" (newest offered)'},
    )
    days_after_release = fields.Integer(
        allow_none=True, strict=True, validate=validate.Range(min=0, max=update_policy.MAX_DAYS_AFTER_RELEASE)
    )
    deadline = fields.AwareDateTime(allow_none=True, metadata={"description": "ISO 8601 with offset"})
    install_time = fields.String(allow_none=True, metadata={"description": "local HH:MM of a forced install"})
    blocked_windows = fields.List(
        fields.Nested(WindowSchema),
        allow_none=True,
        metadata={"description": "local windows when no update may install (shift changes)"},
    )
    android_mode = fields.String(
        allow_none=True,
        validate=validate.OneOf(update_policy.ANDROID_MODES),
        metadata={"description": "Android"},
    )

    @validates_schema
    def _usable(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("give at least one policy field", "_schema")
        problems = update_policy.input_problems(data)
        if problems:
            raise ValidationError(problems)


class UpdatePolicyValuesSchema(Schema):
    target = fields.String(allow_none=True)
    days_after_release = fields.Integer(allow_none=True)
    deadline = fields.String(allow_none=True)
    install_time = fields.String(allow_none=True)
    blocked_windows = fields.List(fields.Nested(WindowSchema), allow_none=True)
    android_mode = fields.String(allow_none=True)


class UpdatePolicySchema(Schema):
    org_unit_id = fields.Integer(
        allow_none=True, required=True, metadata={"description": "null: fleet default"}
    )
    own = fields.Nested(UpdatePolicyValuesSchema, required=True)
    inherited = fields.Nested(UpdatePolicyValuesSchema, required=True)
    effective = fields.Nested(UpdatePolicyValuesSchema, required=True)
    queued = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "after a change"}
    )


class DeviceUpdateSchema(Schema):
    device_id = fields.Integer(required=True)
    name = fields.String(allow_none=True)
    org_unit_id = fields.Integer(allow_none=True)
    os_version = fields.String(allow_none=True, metadata={"description": "null: never reported (unknown)"})
    channel = fields.String(metadata={"description": "declarative (iOS 17+) or commands"})
    target = fields.String(allow_none=True)
    target_build = fields.String(allow_none=True)
    due_at = fields.String(allow_none=True)
    install_at = fields.String(
        allow_none=True, metadata={"description": "local date-time sent to the tablet"}
    )
    reason = fields.String(metadata={"description": " / ".join(REASONS)})
    behind = fields.Boolean()
    install_state = fields.String(allow_none=True)
    pending_version = fields.String(allow_none=True)
    failure = fields.Raw(allow_none=True)
    status_at = fields.String(allow_none=True)
    available = fields.List(fields.Dict())


class DeviceUpdateListSchema(Schema):
    total = fields.Integer()
    items = fields.List(fields.Nested(DeviceUpdateSchema))


class BehindQuerySchema(Schema):
    behind = fields.Boolean(load_default=False, metadata={"description": "only tablets behind their target"})
    org_unit_id = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "this unit and those below it"},
    )


def _view(session: Session, org_unit_id: int | None, queued: dict[str, int] | None = None) -> dict[str, Any]:
    book = update_policy.UpdatePolicyBook(session)
    return {
        "org_unit_id": org_unit_id,
        "own": book.own(org_unit_id),
        "inherited": book.inherited(org_unit_id).as_dict(),
        "effective": book.for_unit(org_unit_id).as_dict(),
        "queued": queued or {},
    }


def _store(org_unit_id: int | None, body: dict[str, Any]) -> dict[str, Any]:
    session = db_session()
    actor = current_principal().actor
    try:
        update_policy.set_update_policy(session, actor, org_unit_id, **body)
    except ValueError as exc:
        session.rollback()
        raise ApiError(400, str(exc)) from exc
    outcome = sync_fleet(
        session, actor=actor, context=command_context(), org_unit_ids=units_below(session, org_unit_id)
    )
    session.commit()
    return _view(session, org_unit_id, outcome.queued)


def _unit_or_404(unit_id: int) -> int:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        raise ApiError(404, f"no org unit with id {unit_id}")
    return unit.id


@blp.route(f"/org-units/<{ID}:unit_id>/os-update-policy", methods=["GET"])
@blp.response(200, UpdatePolicySchema)
@permission(Permission.ORGUNIT_READ)
def get_update_policy(unit_id: int) -> Any:
    """The unit's own update policy, what it inherits and what applies."""
    return _view(db_session(), _unit_or_404(unit_id))


@blp.route(f"/org-units/<{ID}:unit_id>/os-update-policy", methods=["PUT"])
@blp.arguments(UpdatePolicyUpdateSchema)
@blp.response(200, UpdatePolicySchema)
@permission(Permission.ORGUNIT_WRITE)
def put_update_policy(body: dict[str, Any], unit_id: int) -> Any:
    """Change the unit's own values (null inherits); applied at once to its tablets. Audited."""
    return _store(_unit_or_404(unit_id), body)


@blp.route("/os-update-policy/default", methods=["GET"])
@blp.response(200, UpdatePolicySchema)
@permission(Permission.ORGUNIT_READ)
def get_default_update_policy() -> Any:
    """The fleet default: what every unit gets unless it or a unit above sets a value."""
    return _view(db_session(), None)


@blp.route("/os-update-policy/default", methods=["PUT"])
@blp.arguments(UpdatePolicyUpdateSchema)
@blp.response(200, UpdatePolicySchema)
@permission(Permission.ORGUNIT_WRITE)
def put_default_update_policy(body: dict[str, Any]) -> Any:
    """Change the fleet default; only an administrator without a unit scope."""
    if current_principal().scoped:
        raise ApiError(403, "the fleet default covers every unit; a scoped user cannot change it")
    return _store(None, body)


@blp.route("/os-updates/devices", methods=["GET"])
@blp.arguments(BehindQuerySchema, location="query")
@blp.response(200, DeviceUpdateListSchema)
@permission(Permission.DEVICE_READ)
def list_device_updates(query: dict[str, Any]) -> Any:
    """Every Apple tablet the caller sees, most urgent first: version, target, due, why behind."""
    session = db_session()
    principal = current_principal()
    units = None
    if "org_unit_id" in query:
        units = units_below(session, _unit_or_404(query["org_unit_id"]))
    if principal.scope_unit_ids is not None:
        units = set(principal.scope_unit_ids) if units is None else units & set(principal.scope_unit_ids)
    found = [s.as_dict() for s in fleet_states(session, org_unit_ids=units, behind_only=query["behind"])]
    return {"total": len(found), "items": found}


@blp.route(f"/devices/<{ID}:device_id>/os-update", methods=["GET"])
@blp.response(200, DeviceUpdateSchema)
@permission(Permission.DEVICE_READ)
def get_device_update(device_id: int) -> Any:
    """One tablet's OS version, target, due moment, update status and reason."""
    session = db_session()
    device = visible_device(session, current_principal(), device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}")
    state = device_state(session, device)
    if state is None:
        raise ApiError(404, "OS update targets are for Apple tablets; Android follows systemUpdate")
    return state.as_dict()
