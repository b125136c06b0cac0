"""Continuity plans: how many working tablets a unit needs and what "working" means for it.

A unit without a stored plan follows the defaults of its unit type (救急隊, ポンプ隊, 指揮隊 …);
an administrator edits a unit's plan, which is validated here and audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import ContinuityPlan, OrgUnit, OrgUnitKind
from mdm.services.compliance.rules import RULES

# iPads only talk to the server when woken or asked (inventory every few hours), so "seen" is
# measured in hours by default; a unit that checks in more often can tighten it.
DAY_MINUTES = 24 * 60
MIN_SEEN_MINUTES = 5  # below this a tablet between two check-ins would flap


@dataclass(frozen=True)
class Plan:
    required_working: int
    max_seen_minutes: int
    min_battery_percent: int
    require_compliant: bool = True
    ignored_rules: tuple[str, ...] = field(default_factory=tuple)
    # True when no plan is stored for the unit and these are its unit type's defaults.
    is_default: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ignored_rules"] = list(self.ignored_rules)
        return data


# Per unit type (mdm.ground.models.org_unit.UnitType). A command unit runs the scene from two tablets
# (commander and liaison); every other company needs at least its one.
DEFAULT_PLANS: dict[str, Plan] = {
    "ambulance": Plan(1, DAY_MINUTES, 20),
    "pump": Plan(1, DAY_MINUTES, 20),
    "command": Plan(2, DAY_MINUTES, 30),
    "rescue": Plan(1, DAY_MINUTES, 20),
    "ladder": Plan(1, DAY_MINUTES, 20),
    "hazmat": Plan(1, DAY_MINUTES, 20),
    "water_rescue": Plan(1, DAY_MINUTES, 20),
    "support": Plan(1, DAY_MINUTES, 15),
    # Untyped units are not counted until someone gives them a plan.
    "other": Plan(0, DAY_MINUTES, 0),
}


class PlanError(ValueError):
    """A refused plan; `fields` maps each offending field to its messages."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__("invalid continuity plan: " + ", ".join(sorted(fields)))
        self.fields = dict(fields)


class PlanSchema(Schema):
    """A plan as an administrator gives it (API body, console form)."""

    required_working = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=50))
    max_seen_minutes = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=MIN_SEEN_MINUTES, max=30 * DAY_MINUTES)
    )
    min_battery_percent = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100))
    require_compliant = fields.Boolean(load_default=True)
    ignored_rules = fields.List(
        fields.String(validate=validate.OneOf(sorted(RULES))),
        load_default=list,
        validate=validate.Length(max=len(RULES)),
    )


def default_plan(unit_type: str | None) -> Plan:
    base = DEFAULT_PLANS.get(unit_type or "other", DEFAULT_PLANS["other"])
    return Plan(
        base.required_working,
        base.max_seen_minutes,
        base.min_battery_percent,
        base.require_compliant,
        base.ignored_rules,
        is_default=True,
    )


def _from_row(row: ContinuityPlan) -> Plan:
    return Plan(
        row.required_working,
        row.max_seen_minutes,
        row.min_battery_percent,
        row.require_compliant,
        tuple(row.ignored_rules or ()),
    )


def plan_for(session: Session, unit: OrgUnit) -> Plan:
    row = session.scalars(select(ContinuityPlan).where(ContinuityPlan.org_unit_id == unit.id)).first()
    return _from_row(row) if row is not None else default_plan(unit.unit_type)


def plans_for(session: Session, units: list[OrgUnit]) -> dict[int, Plan]:
    """Effective plans of many units in one query."""
    ids = [u.id for u in units]
    rows = (
        {
            r.org_unit_id: r
            for r in session.scalars(select(ContinuityPlan).where(ContinuityPlan.org_unit_id.in_(ids)))
        }
        if ids
        else {}
    )
    return {u.id: _from_row(rows[u.id]) if u.id in rows else default_plan(u.unit_type) for u in units}


def load_plan(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise PlanError({"_schema": ["must be an object"]})
    try:
        clean = dict(PlanSchema().load(dict(data)))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise PlanError(messages) from exc
    clean["ignored_rules"] = sorted(set(clean["ignored_rules"]))
    return clean


def set_plan(session: Session, unit: OrgUnit, data: Mapping[str, Any], *, actor: Actor) -> Plan:
    """Store a unit's plan (all fields given); only a 隊 has one."""
    clean = load_plan(data)
    if unit.kind != OrgUnitKind.UNIT:
        raise PlanError({"org_unit_id": [f"only a unit (隊) has a continuity plan, not a {unit.kind}"]})
    before = plan_for(session, unit)
    row = session.scalars(select(ContinuityPlan).where(ContinuityPlan.org_unit_id == unit.id)).first()
    if row is None:
        row = ContinuityPlan(org_unit_id=unit.id)
        session.add(row)
    for key, value in clean.items():
        setattr(row, key, value)
    row.updated_by = actor.name
    row.updated_at = clock.now()
    session.flush()
    after = _from_row(row)
    record_event(
        session,
        actor,
        "continuity.plan_updated",
        "org_unit",
        unit.id,
        {"from": before.as_dict(), "to": after.as_dict()},
    )
    return after


def reset_plan(session: Session, unit: OrgUnit, *, actor: Actor) -> Plan:
    """Drop a unit's own plan: it follows its unit type's defaults again."""
    row = session.scalars(select(ContinuityPlan).where(ContinuityPlan.org_unit_id == unit.id)).first()
    if row is not None:
        before = _from_row(row)
        session.delete(row)
        session.flush()
        record_event(session, actor, "continuity.plan_reset", "org_unit", unit.id, {"from": before.as_dict()})
    return default_plan(unit.unit_type)
