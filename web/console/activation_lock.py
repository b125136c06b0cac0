"""Activation Lock in the console: the device page's line (on / off / unknown; escrowed or not),
a unit's allow/disallow setting, and the administrator's reveal of the bypass code on the incident
page after a wipe (audited, never cached, never in a list or the API)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _

from commands.activation_lock import apply_unit_setting
from mdm.doors.appctx import command_context, db_session, settings
from mdm.ground.models import Device, Incident, OrgUnit
from mdm.services.activation_lock.escrow import RevealRefused, reveal_bypass_code, wipe_reached_device
from mdm.services.activation_lock.status import ActivationLockStatus, activation_lock_status
from mdm.services.activation_lock.unit_setting import (
    UnitActivationLock,
    set_unit_activation_lock,
    unit_activation_lock,
)
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.console.hotline import _incident_or_404, _ja
from web.errors import field_error
from web.queries import visible_unit
from web.rbac import Permission

# The unit form's choices: blank inherits.
_CHOICES: dict[str, bool | None] = {"": None, "allow": True, "disallow": False}


def device_activation_lock(device: Device) -> ActivationLockStatus | None:
    """For the device page; None for a device Activation Lock does not concern (Android)."""
    if device.platform != "apple":
        return None
    return activation_lock_status(db_session(), device)


def unit_activation_lock_view(unit: OrgUnit) -> UnitActivationLock:
    return unit_activation_lock(db_session(), unit.id)


def incident_activation_lock(incident: Incident) -> dict[str, Any] | None:
    """What the incident page shows of the escrow; None for an Android device."""
    device = incident.device
    if device.platform != "apple":
        return None
    status = activation_lock_status(db_session(), device)
    return {"status": status, "wipe_reached": wipe_reached_device(incident)}


bp.add_app_template_global(device_activation_lock, "device_activation_lock")
bp.add_app_template_global(unit_activation_lock_view, "unit_activation_lock")
bp.add_app_template_global(incident_activation_lock, "incident_activation_lock")


@bp.route("/org-units/<int:unit_id>/activation-lock", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def org_unit_activation_lock(unit_id: int) -> Response:
    principal = current_principal()
    session = db_session()
    unit = visible_unit(session, principal, unit_id)
    if unit is None:
        abort(404)
    choice = (request.form.get("activation_lock") or "").strip()
    if choice not in _CHOICES:
        raise field_error("activation_lock", _("choose inherit, allow or disallow."))
    changed = set_unit_activation_lock(session, unit, _CHOICES[choice], actor=principal.actor)
    devices = 0
    if changed:
        devices = apply_unit_setting(session, unit.id, actor=principal.actor, context=command_context())
    session.commit()
    if changed:
        flash(_("Activation Lock setting saved; sent to %(n)d supervised tablets.", n=devices), "ok")
    else:
        flash(_("Activation Lock setting unchanged."), "ok")
    return redirect(url_for("console.org_unit", unit_id=unit.id) + "#activation-lock")  # type: ignore[return-value]


@bp.route("/hotline/incidents/<int:incident_id>/activation-lock-bypass-code", methods=["POST"])
@needs(Permission.ACTIVATION_LOCK_REVEAL)
def incident_reveal_bypass_code(incident_id: int) -> Response:
    """Shown once, on this response only: not stored in the page's history (no-store), audited."""
    session = db_session()
    incident = _incident_or_404(incident_id)
    principal = current_principal()
    try:
        code = reveal_bypass_code(session, incident, secret_key=settings().secret_key, actor=principal.actor)
    except RevealRefused as exc:
        session.rollback()
        flash(exc.message_ja if _ja() else str(exc), "error")
        return redirect(url_for("console.hotline_incident", incident_id=incident.id))  # type: ignore[return-value]
    session.commit()
    response = make_response(
        render_template("console/activation_lock_code.html", incident=incident, code=code)
    )
    response.headers["Cache-Control"] = "no-store"
    return response
