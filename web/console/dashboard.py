"""The dashboard: what needs attention now."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, g, redirect, render_template, url_for

from commands.incidents.approvers import pending_wipe_requests, person_label
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


def _pending_wipes() -> list[Any]:
    """The wipe requests this approver may decide (in scope), once per request."""
    if "pending_wipes" not in g:
        principal = g.get("principal")
        if principal is None or not principal.can(Permission.WIPE_APPROVE):
            g.pending_wipes = []
        else:
            g.pending_wipes = pending_wipe_requests(db_session(), principal.scope_unit_ids)
    return g.pending_wipes


@bp.app_context_processor
def _approver_queue() -> dict[str, Any]:
    # The navigation shows the count on every page, so an approver sees a request wherever they are.
    return {"pending_wipe_count": lambda: len(_pending_wipes())}


@bp.route("/dashboard")
@needs(Permission.SELF_READ)
def dashboard() -> str | Response:
    principal = current_principal()
    if not principal.can(Permission.DEVICE_READ):
        # Dispatch staff read readiness only: their start page is the continuity board.
        if principal.can(Permission.READINESS_READ):
            return redirect(url_for("console.continuity"))  # type: ignore[return-value]
        abort(403)
    counts = dashboard_counts(db_session(), current_principal())
    alerts = current_alerts()
    return render_template(
        "console/dashboard.html",
        counts=counts,
        alerts=alerts,
        pending_wipes=_pending_wipes(),
        person_label=person_label,
    )
