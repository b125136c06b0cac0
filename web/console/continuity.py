"""Continuity console: which units have working tablets (ready / degraded / critical), what is
missing and why, spares per station, the history of changes; each unit's plan; the spare swap.

Everything shown comes from mdm.services.continuity (the same published state the dispatch feed serves);
this module only reads it for the user's scope and turns forms into service calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _

from mdm.doors.appctx import db_session, settings
from mdm.ground import clock
from mdm.ground.health import service_health
from mdm.ground.models import Device, Incident, OrgUnitKind, ReadinessState
from mdm.services.backup.schedule import backup_status
from mdm.services.compliance.rules import RULES
from mdm.services.continuity import (
    PlanError,
    SpareError,
    UnitReadiness,
    current_readiness,
    hq_rollup,
    plan_for,
    readiness_history,
    reset_plan,
    set_plan,
    spares_by_station,
    station_rollup,
    swap_spare,
)
from web.console.blueprint import bp
from web.console.devices import RULES as RULE_LABELS
from web.console.guard import current_principal, needs
from web.queries import visible_unit
from web.rbac import Permission

# Worst first: the page leads with what needs a decision.
STATE_ORDER = tuple(reversed(ReadinessState.ORDER))
# Shape as well as colour (colour-blind readers, black-and-white print): ✓ ready, ▲ degraded, ✖ critical.
STATE_ICONS = {ReadinessState.READY: "✓", ReadinessState.DEGRADED: "▲", ReadinessState.CRITICAL: "✖"}
PLAN_NUMBERS = ("required_working", "max_seen_minutes", "min_battery_percent")


def _state_label(state: str, locale: str) -> str:
    ja, en = ReadinessState.LABELS.get(state, (state, state))
    return ja if locale == "ja" else en


def _shortfall(unit: UnitReadiness) -> int:
    """Tablets the plan needs that are not even assigned to the unit (nothing to list as missing)."""
    return max(0, unit.required - unit.working - len(unit.missing))


def _rule_label(rule: str) -> str:
    label = RULE_LABELS.get(rule)
    return str(label) if label is not None else rule


def _template_helpers() -> dict[str, Any]:
    return {
        "state_icons": STATE_ICONS,
        "state_label": _state_label,
        "state_order": STATE_ORDER,
        "shortfall": _shortfall,
    }


@bp.route("/continuity")
@needs(Permission.READINESS_READ)
def continuity() -> str:
    principal = current_principal()
    session = db_session()
    scope = principal.scope_unit_ids
    units = current_readiness(session, scope)
    by_state = {state: [u for u in units if u.state == state] for state in STATE_ORDER}
    system: dict[str, Any] | None = None
    if principal.can(Permission.SETTINGS_READ):
        system = {"backup": _backup_for_page(session), "apns": service_health(session, "apns")}
    return render_template(
        "console/continuity.html",
        units=units,
        by_state=by_state,
        hq=hq_rollup(session, units),
        stations=station_rollup(session, units),
        spares=spares_by_station(session, scope),
        history=readiness_history(session, limit=100, principal_scope=scope),
        unit_names={u.unit_id: u.unit_name_ja for u in units},
        system=system,
        now_time=clock.now(),
        **_template_helpers(),
    )


def _backup_for_page(session: Any) -> dict[str, Any]:
    """backup_status with its times as datetimes (shown in local time) and "never" for none."""
    status = dict(backup_status(session, settings()))
    for key in ("last_success_at", "failing_since", "last_attempt_at"):
        value = status.get(key)
        status[key] = format_datetime(datetime.fromisoformat(value), "yyyy-MM-dd HH:mm") if value else None
    return status


# -- plan ---------------------------------------------------------------------------------------------


def _unit_or_404(unit_id: int) -> Any:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None or unit.kind != OrgUnitKind.UNIT:
        abort(404)
    return unit


def _plan_from_form(form: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    data: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name in PLAN_NUMBERS:
        raw = (form.get(name) or "").strip()
        try:
            data[name] = int(raw)
        except ValueError:
            errors[name] = [_("Enter a whole number.")]
    data["require_compliant"] = form.get("require_compliant") == "on"
    data["ignored_rules"] = form.getlist("ignored_rules")
    return data, errors


def _plan_page(
    unit: Any, errors: dict[str, list[str]] | None = None, form: dict[str, Any] | None = None
) -> str:
    session = db_session()
    plan = plan_for(session, unit)
    readiness = current_readiness(session, {unit.id})
    values = form if form is not None else plan.as_dict()
    return render_template(
        "console/continuity_plan.html",
        unit=unit,
        plan=plan,
        values=values,
        readiness=readiness[0] if readiness else None,
        rules=[(name, _rule_label(name)) for name in sorted(RULES)],
        history=readiness_history(session, unit.id, limit=20),
        errors=errors or {},
        **_template_helpers(),
    )


@bp.route("/continuity/units/<int:unit_id>/plan", methods=["GET", "POST"])
@needs(Permission.READINESS_READ)
def continuity_plan(unit_id: int) -> Response | str:
    principal = current_principal()
    session = db_session()
    unit = _unit_or_404(unit_id)
    if request.method == "GET":
        return _plan_page(unit)
    if not principal.can(Permission.CONTINUITY_WRITE):
        abort(403)
    data, errors = _plan_from_form(request.form)
    if not errors:
        try:
            set_plan(session, unit, data, actor=principal.actor)
            session.commit()
        except PlanError as exc:
            session.rollback()
            errors = {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in exc.fields.items()}
    if errors:
        form = {**data, **{k: request.form.get(k, "") for k in PLAN_NUMBERS if k in errors}}
        return _plan_page(unit, errors, form)
    flash(_("Saved the continuity plan of %(name)s.", name=unit.name_ja), "ok")
    return redirect(url_for("console.continuity_plan", unit_id=unit.id))  # type: ignore[return-value]


@bp.route("/continuity/units/<int:unit_id>/plan/reset", methods=["POST"])
@needs(Permission.CONTINUITY_WRITE)
def continuity_plan_reset(unit_id: int) -> Response:
    session = db_session()
    unit = _unit_or_404(unit_id)
    reset_plan(session, unit, actor=current_principal().actor)
    session.commit()
    flash(_("%(name)s follows the defaults of its unit type again.", name=unit.name_ja), "ok")
    return redirect(url_for("console.continuity_plan", unit_id=unit.id))  # type: ignore[return-value]


# -- spare swap ---------------------------------------------------------------------------------------


def _int_arg(source: Any, name: str, *, required: bool) -> int | None:
    raw = (source.get(name) or "").strip()
    if not raw:
        if required:
            abort(400, description=_("%(field)s is required.", field=name))
        return None
    try:
        return int(raw)
    except ValueError:
        abort(400, description=_("%(field)s must be a whole number.", field=name))


def _visible_incident(incident_id: int | None) -> Incident | None:
    if incident_id is None:
        return None
    incident = db_session().get(Incident, incident_id)
    if incident is None or not current_principal().sees_unit(incident.org_unit_id):
        abort(404)
    return incident


def _swap_page(unit: Any, incident: Incident | None, error: str | None = None) -> str:
    session = db_session()
    readiness = current_readiness(session, {unit.id})
    here = readiness[0] if readiness else None
    station = None
    if here is not None and here.station_id is not None:
        pools = spares_by_station(session, current_principal().scope_unit_ids)
        station = next((s for s in pools if s.station_id == here.station_id), None)
    return render_template(
        "console/continuity_swap.html",
        unit=unit,
        readiness=here,
        station=station,
        incident=incident,
        error=error,
        **_template_helpers(),
    )


@bp.route("/continuity/swap", methods=["GET", "POST"])
@needs(Permission.READINESS_READ)
def continuity_swap() -> Response | str:
    """Reached from the hotline incident ("next step after lock now") with unit_id and incident_id."""
    principal = current_principal()
    session = db_session()
    source = request.form if request.method == "POST" else request.args
    unit_id = _int_arg(source, "unit_id", required=True)
    assert unit_id is not None
    unit = _unit_or_404(unit_id)
    incident = _visible_incident(_int_arg(source, "incident_id", required=False))
    if request.method == "GET":
        return _swap_page(unit, incident)
    if not principal.can(Permission.INCIDENT_WRITE):
        abort(403)
    spare_id = _int_arg(request.form, "spare_device_id", required=True)
    spare = session.get(Device, spare_id)
    if spare is None or not principal.sees_unit(spare.org_unit_id):
        return _swap_page(unit, incident, _("That spare tablet no longer exists."))
    try:
        outcome = swap_spare(session, spare, unit, actor=principal.actor, incident=incident)
        session.commit()
    except SpareError as exc:
        session.rollback()
        return _swap_page(unit, incident, str(exc))
    name = outcome.device.device_name or outcome.device.serial_number or f"#{outcome.device.id}"
    flash(
        _(
            "Spare %(spare)s is now assigned to %(unit)s; its profiles are on their way. It counts "
            "as working for the unit once the tablet has checked in and its profile list shows the "
            "unit's profiles installed.",
            spare=name,
            unit=unit.name_ja,
        ),
        "ok",
    )
    if incident is not None and "console.hotline_incident" in current_app.view_functions:
        return redirect(url_for("console.hotline_incident", incident_id=incident.id))  # type: ignore[return-value]
    return redirect(url_for("console.continuity"))  # type: ignore[return-value]
