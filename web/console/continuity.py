"""Continuity console: which units have working tablets (ready / degraded / critical), what is
missing and why, spares per station, the history of changes; each unit's plan; the spare swap.

Everything shown comes from mdm.services.continuity (the same published state the dispatch feed serves);
this module only reads it for the user's scope and turns forms into service calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from mdm.doors.appctx import command_context, db_session, settings
from mdm.ground import clock
from mdm.ground.health import service_health
from mdm.ground.models import (
    Device,
    EnrollmentState,
    Incident,
    OrgUnit,
    OrgUnitKind,
    ReadinessState,
    SpareDevice,
)
from mdm.services.backup.schedule import backup_status
from mdm.services.compliance.rules import RULES
from mdm.services.continuity import (
    PlanError,
    SpareError,
    UnitReadiness,
    current_readiness,
    plan_for,
    readiness_history,
    reset_plan,
    set_plan,
    spares_by_station,
    swap_spare,
    unmark_spare,
)
from mdm.services.continuity import mark_spare as keep_as_spare
from mdm.services.continuity.readiness_pages import missing_page, readiness_page
from mdm.services.continuity.world import POOL_KINDS, World, load_world
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.console.labels import RULES as RULE_LABELS
from web.errors import field_error
from web.queries import visible_device, visible_unit
from web.rbac import Permission

# Worst first: the page leads with what needs a decision.
STATE_ORDER = tuple(reversed(ReadinessState.ORDER))
# Shape as well as colour (colour-blind readers, black-and-white print): ✓ ready, ▲ degraded, ✖ critical.
STATE_ICONS = {ReadinessState.READY: "✓", ReadinessState.DEGRADED: "▲", ReadinessState.CRITICAL: "✖"}
PLAN_NUMBERS = ("required_working", "max_seen_minutes", "min_battery_percent")
# Units on one page of the board (a prefecture has 14,000); worst first, so page 1 is what matters.
UNITS_PER_PAGE = 50
# One unit's missing tablets on its own page.
MISSING_PER_PAGE = 100


def _state_label(state: str, locale: str) -> str:
    ja, en = ReadinessState.LABELS.get(state, (state, state))
    return ja if locale == "ja" else en


def _shortfall(unit: UnitReadiness) -> int:
    """Tablets the plan needs that are not even assigned to the unit (nothing to list as missing)."""
    return max(0, unit.required - unit.working - unit.missing_total)


def _rule_label(rule: str) -> str:
    label = RULE_LABELS.get(rule)
    return str(label) if label is not None else rule


def _reasons_text(locale: str) -> Any:
    """Why a tablet does not count, as one line in the reader's language. A board page lists
    hundreds of missing tablets, mostly for the same few reasons: each distinct list of reasons
    is worded once per page (in the template it was a third of the board's 574 ms)."""
    ja = locale == "ja"
    comma = "、" if ja else ", "
    worded: dict[tuple[Any, ...], str] = {}

    def reason(r: dict[str, Any]) -> str:
        rules = r.get("rules")
        if r.get("code") == "noncompliant" and rules:
            return _("not compliant: %(rules)s", rules=comma.join(_rule_label(x) for x in rules))
        return str(r.get("ja") if ja else r.get("en"))

    def text(reasons: list[dict[str, Any]]) -> str:
        # What the wording depends on, as a key (json.dumps of each list was 6 ms of a board).
        key = tuple((r.get("code"), r.get("ja"), r.get("en"), tuple(r.get("rules") or ())) for r in reasons)
        if key not in worded:
            worded[key] = comma.join(reason(r) for r in reasons)
        return worded[key]

    return text


def _device_href() -> Any:
    """The link to a device's page: url_for once, not once per listed tablet."""
    prefix = url_for("console.device", device_id=0)[:-1]
    return lambda device_id: f"{prefix}{int(device_id)}"


def _template_helpers() -> dict[str, Any]:
    return {
        "state_icons": STATE_ICONS,
        "state_label": _state_label,
        "state_order": STATE_ORDER,
        "shortfall": _shortfall,
        "reasons_text": _reasons_text(str(get_locale() or "ja")),
        "device_href": _device_href(),
    }


@bp.route("/continuity")
@needs(Permission.READINESS_READ)
def continuity() -> str:
    principal = current_principal()
    session = db_session()
    scope = principal.scope_unit_ids
    filters, errors = _board_filters(request.args)
    under = filters.get("unit_id")
    if under is not None and visible_unit(session, principal, under) is None:
        errors["unit_id"] = [_("Unknown unit.")]
        under = None
    found = readiness_page(
        session,
        scope,
        page=filters.get("page", 1),
        per_page=UNITS_PER_PAGE,
        under=under,
        state=filters.get("state"),
        order="state",
    )
    units = found.units
    by_state = {state: [u for u in units if u.state == state] for state in STATE_ORDER}
    history = readiness_history(session, limit=100, principal_scope=scope)
    # The tree and the spares, read once for the spare pools and the tablets that could join them.
    spare_world = load_world(session, set())
    system: dict[str, Any] | None = None
    if principal.can(Permission.SETTINGS_READ):
        system = {"backup": _backup_for_page(session), "apns": service_health(session, "apns")}
    return render_template(
        "console/continuity.html",
        result=found,
        units=units,
        by_state=by_state,
        counts=found.counts,
        hq=found.hq,
        stations=found.stations,
        places=_places(session, principal),
        filters=request.args,
        errors=errors,
        query={k: v for k, v in request.args.items() if k != "page" and v},
        spares=spares_by_station(session, scope, world=spare_world),
        spare_candidates=spare_candidates(session, scope, world=spare_world),
        history=history,
        unit_names=_unit_names(session, {e.org_unit_id for e in history}),
        system=system,
        now_time=clock.now(),
        **_template_helpers(),
    )


def _board_filters(args: MultiDict[str, str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """page, unit_id (a station or HQ: its units only) and state of the board; bad ones named."""
    filters: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name in ("page", "unit_id"):
        raw = (args.get(name) or "").strip()
        if not raw:
            continue
        if not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
            errors[name] = [_("Enter a whole number.")]
            continue
        filters[name] = int(raw)
    state = (args.get("state") or "").strip()
    if state and state not in ReadinessState.ORDER:
        errors["state"] = [_("Unknown state.")]
    elif state:
        filters["state"] = state
    return filters, errors


def _places(session: Any, principal: Any) -> list[OrgUnit]:
    """What the board can be narrowed to: HQs, stations and branches (a few hundred at most;
    the 隊 themselves, 14,000 in a prefecture, are what the board lists)."""
    nodes = session.scalars(
        select(OrgUnit)
        .where(OrgUnit.kind != OrgUnitKind.UNIT)
        .order_by(OrgUnit.code, OrgUnit.name_ja, OrgUnit.id)
    )
    return [n for n in nodes if principal.sees_unit(n.id)]


def _unit_names(session: Any, unit_ids: set[int | None]) -> dict[int, str]:
    ids = sorted(i for i in unit_ids if i is not None)
    if not ids:
        return {}
    return dict(session.execute(select(OrgUnit.id, OrgUnit.name_ja).where(OrgUnit.id.in_(ids))).all())


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
        profile_rows=unit_profile_rows(session, unit.id) if principal_can_read_profiles() else None,
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


@bp.route("/continuity/units/<int:unit_id>/missing")
@needs(Permission.READINESS_READ)
def continuity_missing(unit_id: int) -> str:
    """Every tablet of one unit that does not count, a page at a time (the board shows the worst
    few of each unit)."""
    unit = _unit_or_404(unit_id)
    raw = (request.args.get("page") or "1").strip()
    if not raw.isdecimal() or not 1 <= int(raw) <= 100_000:
        raise field_error("page", _("Enter a whole number."))
    found = missing_page(db_session(), unit, page=int(raw), per_page=MISSING_PER_PAGE)
    return render_template("console/continuity_missing.html", unit=unit, result=found, **_template_helpers())


# -- spare swap ---------------------------------------------------------------------------------------


def _int_arg(source: Any, name: str, *, required: bool) -> int | None:
    raw = (source.get(name) or "").strip()
    if not raw:
        if required:
            raise field_error(name, _("%(field)s is required.", field=name))
        return None
    if not raw.isdecimal() or len(raw) > 9:
        raise field_error(name, _("%(field)s must be a whole number.", field=name))
    return int(raw)


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
    candidates = []
    if here is not None and here.station_id is not None:
        candidates = spare_candidates(session, current_principal().scope_unit_ids).get(here.station_id, [])
    return render_template(
        "console/continuity_swap.html",
        unit=unit,
        readiness=here,
        station=station,
        candidates=candidates,
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
        outcome = swap_spare(
            session, spare, unit, actor=principal.actor, incident=incident, context=command_context()
        )
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


# -- marking spares (issue #19 item 3) ----------------------------------------------------------------


def spare_candidates(
    session: Any, scope: frozenset[int] | None, *, world: World | None = None
) -> dict[int, list[Device]]:
    """Per station (the pool spares are counted in): the tablets kept there that could be marked
    as spares: assigned to the station itself or one of its branches, not retired, not spares yet."""
    world = world if world is not None else load_world(session, set())
    pool_units: dict[int, int] = {}
    for unit in world.units.values():
        if unit.kind in POOL_KINDS and (scope is None or unit.id in scope):
            pool = world.pool_of(unit.id)
            if pool is not None:
                pool_units[unit.id] = pool
    if not pool_units:
        return {}
    devices = session.scalars(
        select(Device)
        .where(
            Device.org_unit_id.in_(sorted(pool_units)),
            Device.enrollment_state != EnrollmentState.RETIRED,
            Device.id.not_in(select(SpareDevice.device_id)),
        )
        .order_by(Device.device_name, Device.id)
    )
    out: dict[int, list[Device]] = {}
    for device in devices:
        out.setdefault(pool_units[device.org_unit_id], []).append(device)
    return out


def _back(default: str) -> str:
    back = request.form.get("back") or ""
    return back if back.startswith("/console/") and not back.startswith("//") else default


def _spare_device_or_404(device_id: int) -> Device:
    device = visible_device(db_session(), current_principal(), device_id)
    if device is None:
        abort(404)
    return device


@bp.route("/continuity/spares/mark", methods=["POST"])
@needs(Permission.CONTINUITY_WRITE)
def continuity_spare_mark() -> Response:
    """Keep a tablet of a station (or branch) as its spare; audited as continuity.spare_marked."""
    principal = current_principal()
    session = db_session()
    device_id = _int_arg(request.form, "device_id", required=True)
    assert device_id is not None
    device = _spare_device_or_404(device_id)
    note = (request.form.get("note") or "").replace("\x00", "").strip()
    if len(note) > 255:
        raise field_error(_("Note"), _("at most 255 characters"))
    try:
        keep_as_spare(session, device, actor=principal.actor, note=note)
    except SpareError as exc:
        session.rollback()
        if exc.field == "device_id":
            raise field_error(
                _("Tablet"),
                _("a spare must be assigned to a station or branch, not to a unit"),
            ) from exc
        raise field_error(exc.field, exc.message, exc.status) from exc
    session.commit()
    name = device.device_name or device.serial_number or f"#{device.id}"
    flash(_("%(name)s is now kept as a spare.", name=name), "ok")
    return redirect(_back(url_for("console.continuity") + "#spares"))  # type: ignore[return-value]


@bp.route("/continuity/spares/<int:device_id>/unmark", methods=["POST"])
@needs(Permission.CONTINUITY_WRITE)
def continuity_spare_unmark(device_id: int) -> Response:
    """The tablet is no longer a spare; audited as continuity.spare_unmarked."""
    principal = current_principal()
    session = db_session()
    device = _spare_device_or_404(device_id)
    if not unmark_spare(session, device, actor=principal.actor):
        raise field_error(_("Tablet"), _("this tablet is not a spare"), 409)
    session.commit()
    name = device.device_name or device.serial_number or f"#{device.id}"
    flash(_("%(name)s is no longer a spare.", name=name), "ok")
    return redirect(_back(url_for("console.continuity") + "#spares"))  # type: ignore[return-value]


def spare_state(session: Any, device: Device) -> SpareDevice | None:
    """The device's spare row while it is a spare (not once swapped into a unit)."""
    row = session.scalars(select(SpareDevice).where(SpareDevice.device_id == device.id)).first()
    return row if row is not None and row.swapped_to_unit_id is None else None


def may_keep_as_spare(session: Any, device: Device) -> bool:
    home = device.org_unit
    return home is not None and home.kind in POOL_KINDS and device.enrollment_state != EnrollmentState.RETIRED


# -- desired versus installed profiles of a unit's tablets (issue #19 item 2) -------------------------


def principal_can_read_profiles() -> bool:
    return current_principal().can(Permission.PROFILE_READ)


def unit_profile_rows(session: Any, unit_id: int) -> list[dict[str, Any]]:
    """Every tablet of the unit with its profile states (the service behind the API's
    /devices/<id>/profiles), worst first."""
    from web.console.profiles import device_profile_rows

    devices = list(
        session.scalars(
            select(Device).where(Device.org_unit_id == unit_id).order_by(Device.device_name, Device.id)
        )
    )
    return [{"device": d, "profiles": device_profile_rows(session, d)} for d in devices]
