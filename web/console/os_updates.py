"""OS updates in the console: the "who is behind and why" page, each unit's update policy form on
its org unit page, and the device page's line (OS version, target, due, status, reason)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from mdm.doors.appctx import command_context, db_session
from mdm.ground.models import Device, OrgUnit
from mdm.services.osupdates import policy as update_policy
from mdm.services.osupdates.enforcement import sync_fleet, units_below
from mdm.services.osupdates.report import DeviceUpdateState, device_state, fleet_states
from mdm.services.osupdates.targets import FLEET_ZONE
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.errors import field_error
from web.queries import visible_unit
from web.rbac import Permission

# Why a tablet is (or is not) behind, for a person on the night shift.
REASON_TEXT: dict[str, Any] = {
    "no_target": _l("no OS target for its unit"),
    "os_unknown": _l("OS version unknown (never reported): cannot confirm the update"),
    "up_to_date": _l("up to date"),
    "not_supervised": _l("not supervised: before iOS 17 the update cannot be sent"),
    "failed": _l("the tablet reported the update failed"),
    "overdue": _l("past the deadline and still behind"),
    "scheduled": _l("behind; the install is scheduled"),
}
_WINDOW = re.compile(r"^\s*(\d{2}:\d{2})\s*[-–~〜]\s*(\d{2}:\d{2})\s*$")


def device_os_update(device: Device) -> DeviceUpdateState | None:
    return device_state(db_session(), device) if device.platform == "apple" else None


def unit_os_update_policy(unit: OrgUnit) -> dict[str, Any]:
    book = update_policy.UpdatePolicyBook(db_session())
    return {"own": book.own(unit.id), "effective": book.for_unit(unit.id).as_dict()}


def os_update_reason(reason: str) -> str:
    return str(REASON_TEXT.get(reason, reason))


bp.add_app_template_global(device_os_update, "device_os_update")
bp.add_app_template_global(unit_os_update_policy, "unit_os_update_policy")
bp.add_app_template_global(os_update_reason, "os_update_reason")


@bp.route("/os-updates")
@needs(Permission.DEVICE_READ)
def os_updates() -> str:
    principal = current_principal()
    session = db_session()
    units = set(principal.scope_unit_ids) if principal.scope_unit_ids is not None else None
    behind_only = request.args.get("all") != "1"
    states = fleet_states(session, org_unit_ids=units, behind_only=behind_only)
    names = {u.id: u.name_ja for u in session.query(OrgUnit)}
    return render_template("console/os_updates.html", states=states, names=names, behind_only=behind_only)


def _form_values() -> dict[str, Any]:
    """The form's fields as the policy takes them; a blank field inherits."""
    form = request.form
    values: dict[str, Any] = {}
    for name in ("target", "install_time", "android_mode"):
        values[name] = (form.get(name) or "").strip() or None
    days = (form.get("days_after_release") or "").strip()
    if days and not days.isdigit():
        raise field_error("days_after_release", _("enter a whole number of days."))
    values["days_after_release"] = int(days) if days else None
    deadline = (form.get("deadline") or "").strip()
    if deadline:
        try:
            values["deadline"] = datetime.fromisoformat(deadline).replace(tzinfo=FLEET_ZONE)
        except ValueError:
            raise field_error("deadline", _("enter a date and time.")) from None
    else:
        values["deadline"] = None
    windows_text = (form.get("blocked_windows") or "").strip()
    windows = []
    for part in filter(None, (p.strip() for p in re.split(r"[,、\n]", windows_text))):
        match = _WINDOW.match(part)
        if match is None:
            raise field_error("blocked_windows", _("write each window as HH:MM-HH:MM, separated by commas."))
        windows.append({"start": match.group(1), "end": match.group(2)})
    values["blocked_windows"] = windows or None
    problems = update_policy.input_problems(values)
    if problems:
        name, messages = sorted(problems.items())[0]
        raise field_error(name, " ".join(messages))
    return values


@bp.route("/org-units/<int:unit_id>/os-update-policy", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def org_unit_os_update_policy(unit_id: int) -> Response:
    principal = current_principal()
    session = db_session()
    unit = visible_unit(session, principal, unit_id)
    if unit is None:
        abort(404)
    values = _form_values()
    update_policy.set_update_policy(session, principal.actor, unit.id, **values)
    outcome = sync_fleet(
        session, actor=principal.actor, context=command_context(), org_unit_ids=units_below(session, unit.id)
    )
    session.commit()
    flash(_("OS update policy saved; sent to %(n)d tablets.", n=sum(outcome.queued.values())), "ok")
    return redirect(url_for("console.org_unit", unit_id=unit.id) + "#os-update-policy")  # type: ignore[return-value]
