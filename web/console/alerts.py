"""Alerts: the list with filters, one alert with its webhook deliveries, acknowledge with a comment."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import fields, validate

from mdm.doors.appctx import db_session
from mdm.services.alerts.service import AlertStateError, acknowledge_alert
from web.api.schemas import Id, Text
from web.console.blueprint import bp
from web.console.forms import FormSchema, load_form
from web.console.guard import current_principal, needs
from web.queries import ALERT_STATES, alert_deliveries, search_alerts, visible_alert, visible_units
from web.rbac import Permission

ALERT_STATE_LABELS = {"open": _l("open"), "acknowledged": _l("acknowledged")}
DELIVERY_LABELS = {"pending": _l("waiting for retry"), "delivered": _l("delivered"), "failed": _l("failed")}


class AlertFilterForm(FormSchema):
    state = fields.String(validate=validate.OneOf(ALERT_STATES))
    severity = fields.String(validate=validate.OneOf(("info", "warning", "critical")))
    unit_id = Id(strict=False)
    device_id = Id(strict=False)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


class AcknowledgeForm(FormSchema):
    comment = Text(required=True, validate=validate.Length(min=1, max=2000))


@bp.app_context_processor
def _alert_labels() -> dict[str, object]:
    return {
        "alert_state_label": lambda s: str(ALERT_STATE_LABELS.get(s, s)),
        "delivery_label": lambda s: str(DELIVERY_LABELS.get(s, s)),
    }


@bp.route("/alerts")
@needs(Permission.ALERT_READ)
def alerts() -> str:
    session = db_session()
    principal = current_principal()
    # Open alerts first thing: what still needs someone; `state=` (empty) shows every alert.
    args = request.args if "state" in request.args else {**request.args, "state": "open"}
    data, errors = load_form(AlertFilterForm(), args)
    if data.get("unit_id") is not None and not principal.sees_unit(data["unit_id"]):
        errors = {"unit_id": [_("Unknown unit.")]}
    if errors:
        data = {}
    result = search_alerts(session, principal, {**data, "per_page": 50})
    return render_template(
        "console/alerts.html",
        result=result,
        filters=args,
        query={k: v for k, v in args.items() if k != "page"},
        errors=errors,
        units=visible_units(session, principal),
        alert=None,
    )


@bp.route("/alerts/<int:alert_id>")
@needs(Permission.ALERT_READ)
def alert(alert_id: int) -> str:
    session = db_session()
    found = visible_alert(session, current_principal(), alert_id)
    if found is None:
        abort(404)
    return render_template(
        "console/alerts.html",
        alert=found,
        deliveries=alert_deliveries(session, found),
        result=None,
    )


@bp.route("/alerts/<int:alert_id>/acknowledge", methods=["POST"])
@needs(Permission.ALERT_ACK)
def acknowledge(alert_id: int) -> Response:
    principal = current_principal()
    session = db_session()
    found = visible_alert(session, principal, alert_id)
    if found is None:
        abort(404)
    back = request.form.get("back", "")
    if not back.startswith("/console/") or back.startswith("//"):
        back = url_for("console.alert", alert_id=alert_id)
    data, errors = load_form(AcknowledgeForm(), request.form)
    if errors or not data["comment"].strip():
        flash(_("Say what was done about the alert before acknowledging it."), "error")
        return redirect(back)  # type: ignore[return-value]
    try:
        acknowledge_alert(session, found, principal.actor, data["comment"].strip())
    except AlertStateError:
        session.rollback()
        flash(_("This alert was already acknowledged."), "error")
        return redirect(back)  # type: ignore[return-value]
    session.commit()
    flash(_("Alert acknowledged."), "ok")
    return redirect(back)  # type: ignore[return-value]
