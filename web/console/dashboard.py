"""The dashboard: what needs attention now."""

from __future__ import annotations

from flask import render_template

from mdm.doors.appctx import db_session
from mdm.ground.push.certificates import active_push_certificate
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.console.push_text import push_certificate_refused, push_certificate_warning
from web.queries import dashboard_counts
from web.rbac import Permission


def current_alerts() -> list[str]:
    """Real conditions only: push certificate missing, expiring or refused by Apple."""
    session = db_session()
    alerts = []
    cert = active_push_certificate(session)
    warning = push_certificate_warning(cert)
    if warning:
        alerts.append(warning)
    if cert is not None and cert.last_error:
        alerts.append(push_certificate_refused(cert.last_error))
    return alerts


@bp.route("/dashboard")
@needs(Permission.DEVICE_READ)
def dashboard() -> str:
    counts = dashboard_counts(db_session(), current_principal())
    alerts = current_alerts()
    return render_template("console/dashboard.html", counts=counts, alerts=alerts)
