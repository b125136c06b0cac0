"""Alerts: the list with filters, one alert with its webhook deliveries, acknowledge with a comment;
the alert rules (the compliance policy of the fleet and of each unit) and where alerts go."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import fields, validate
from sqlalchemy import func, select

from mdm.doors.appctx import db_session, settings
from mdm.ground.models import Webhook
from mdm.services.alerts.service import AlertStateError, acknowledge_alert
from mdm.services.unit_policy import POLICY_FIELDS, set_unit_policy
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


# -- alert rules: the compliance policy behind compliance alerts (issue #19 item 8) ------------------

POLICY_LABELS = {
    "minimum_os_version": _l("Minimum iOS/iPadOS version"),
    "offline_limit_hours": _l("Alert when not seen for (hours)"),
    "require_supervision": _l("Supervision required"),
    "inventory_interval_hours": _l("Inventory interval (hours)"),
    "certificate_warning_days": _l("Warn before a certificate expires (days)"),
    "minimum_android_security_patch": _l("Minimum Android security patch (YYYY-MM-DD)"),
}
POLICY_PROBLEMS = {
    "minimum_os_version": _l("a version like 17.4 or 17.4.1"),
    "offline_limit_hours": _l("a whole number of hours from 1 to 8760"),
    "require_supervision": _l("required, not required, or blank"),
    "inventory_interval_hours": _l("a whole number of hours from 1 to 8760"),
    "certificate_warning_days": _l("a whole number of days from 1 to 3650"),
    "minimum_android_security_patch": _l("a date YYYY-MM-DD"),
}


def _policy_value(name: str, text: str | None) -> object:
    """A form's text as the API schema expects it: blank is None (inherit / built-in default),
    digits an int, the supervision choice a boolean; anything else is left for the schema."""
    text = (text or "").strip()
    if not text:
        return None
    if name == "require_supervision":
        return {"yes": True, "no": False}.get(text, text)
    if name in ("offline_limit_hours", "inventory_interval_hours", "certificate_warning_days"):
        return int(text) if text.isdecimal() and len(text) < 6 else text
    return text


def _rules_page(errors: dict[str, list[str]] | None = None, form: dict[str, str] | None = None) -> Any:
    from mdm.services.alerts.email import email_enabled
    from mdm.services.mail.server import mail_server
    from web.api.compliance_policy import compliance_policy_view

    principal = current_principal()
    session = db_session()
    units = visible_units(session, principal)
    rows = [(unit, compliance_policy_view(session, unit.id)) for unit in units]
    conf = settings()
    html = render_template(
        "console/alert_rules.html",
        default=compliance_policy_view(session, None),
        rows=rows,
        labels=POLICY_LABELS,
        fields=POLICY_FIELDS,
        may_edit_default=principal.can(Permission.ORGUNIT_WRITE) and not principal.scoped,
        email_on=email_enabled(mail_server(session, conf), conf),
        # The addresses are for those who may read settings; others see that e-mail is on.
        email_to_text=", ".join(conf.alert_email_to) if principal.can(Permission.SETTINGS_READ) else "…",
        webhooks_enabled=session.scalar(
            select(func.count()).select_from(Webhook).where(Webhook.enabled.is_(True))
        ),
        errors=errors or {},
        form=form,
    )
    return (html, 400) if errors else html


@bp.route("/alert-rules")
@needs(Permission.INCIDENT_READ)
def alert_rules() -> Any:
    """What raises compliance alerts: the fleet default and every unit's own values, and where
    alerts go (e-mail, webhooks)."""
    return _rules_page()


@bp.route("/alert-rules/default", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def alert_rules_default() -> Any:
    """Change the fleet default; blank returns a field to the built-in default. Audited as
    compliance.policy_changed. Only without a unit scope: the default covers every station."""
    from web.api.compliance_policy import CompliancePolicyUpdateSchema, compliance_policy_view

    principal = current_principal()
    if principal.scoped:
        abort(403)
    session = db_session()
    data = {name: _policy_value(name, request.form.get(name)) for name in POLICY_FIELDS}
    schema = CompliancePolicyUpdateSchema()
    problems = schema.validate(data)
    if problems:
        errors = {name: [str(POLICY_PROBLEMS.get(name, name))] for name in problems if name in POLICY_FIELDS}
        return _rules_page(errors or {"_schema": [_("Check the form.")]}, dict(request.form))
    clean = schema.load(data)
    own = compliance_policy_view(session, None)["own"]
    changed = {name: clean[name] for name in POLICY_FIELDS if clean[name] != own[name]}
    if changed:
        set_unit_policy(session, principal.actor, None, **changed)
        session.commit()
        flash(
            _("Fleet default saved: %(fields)s.", fields=", ".join(str(POLICY_LABELS[n]) for n in changed)),
            "ok",
        )
    else:
        flash(_("Nothing changed."), "ok")
    return redirect(url_for("console.alert_rules"))
