"""Webhooks in the console: list with delivery counts, create (the secret is shown once),
disable or enable, send a signed test, and each webhook's delivery log with every attempt. Same
services and checks as the API and CLI; audited.

A webhook receives the alerts of every unit, so only an administrator without a unit scope may
create, test or switch one; a scoped reader's delivery log lists only the alerts of its units."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from mdm.doors.appctx import db_session, settings
from mdm.ground.audit import record_event
from mdm.ground.models import Alert, AuditEvent, DeliveryStatus, Webhook, WebhookDelivery
from mdm.services.alerts.webhooks import (
    WebhookError,
    create_webhook,
    list_webhooks,
    post_delivery,
    recent_deliveries,
    set_webhook_enabled,
    trial_delivery,
)
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.queries import _paged
from web.rbac import Permission, Principal

DELIVERIES_PER_PAGE = 50


def _page(
    errors: dict[str, list[str]] | None = None, form: dict[str, str] | None = None
) -> str | tuple[str, int]:
    session = db_session()
    failed = dict(
        session.execute(
            select(WebhookDelivery.webhook_id, func.count())
            .where(WebhookDelivery.status == DeliveryStatus.FAILED)
            .group_by(WebhookDelivery.webhook_id)
        ).all()
    )
    hooks = list_webhooks(session)
    html = render_template(
        "console/webhooks.html",
        hooks=hooks,
        failed=failed,
        recent={h.id: recent_deliveries(session, h.id, limit=5) for h in hooks} if not _scoped() else {},
        errors=errors or {},
        form=form or {},
    )
    return (html, 400) if errors else html


def _scoped() -> bool:
    return current_principal().scoped


def _unscoped_writer() -> Principal:
    principal = current_principal()
    if principal.scoped:
        abort(403)  # a webhook carries every unit's alerts: not for a unit-scoped administrator
    return principal


def _webhook_or_404(webhook_id: int) -> Webhook:
    webhook = db_session().get(Webhook, webhook_id)
    if webhook is None:
        abort(404)
    return webhook


@bp.route("/webhooks")
@needs(Permission.SETTINGS_READ)
def webhooks_page() -> str | tuple[str, int]:
    return _page()


@bp.route("/webhooks", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def webhook_create() -> str | tuple[str, int]:
    principal = _unscoped_writer()
    session = db_session()
    conf = settings()
    name, url = request.form.get("name", ""), request.form.get("url", "")
    try:
        hook, secret = create_webhook(
            session,
            principal.actor,
            name[:100],
            url[:1024],
            secret_key=conf.secret_key,
            allow_networks=conf.webhook_allow_networks,
        )
    except WebhookError as exc:
        session.rollback()
        return _page({exc.field: [str(exc).split(": ", 1)[-1]]}, {"name": name, "url": url})
    session.commit()
    flash(
        _(
            "Webhook %(name)s created. Its signing secret is shown only now: %(secret)s",
            name=hook.name,
            secret=secret,
        ),
        "ok",
    )
    return _page()


@bp.route("/webhooks/<int:webhook_id>/<any(enable, disable):action>", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def webhook_toggle(webhook_id: int, action: str) -> Response:
    principal = _unscoped_writer()
    session = db_session()
    webhook = _webhook_or_404(webhook_id)
    set_webhook_enabled(session, principal.actor, webhook, action == "enable")
    session.commit()
    if action == "enable":
        flash(_("Webhook %(name)s enabled: new alerts are delivered to it again.", name=webhook.name), "ok")
    else:
        flash(_("Webhook %(name)s disabled: it receives nothing until enabled.", name=webhook.name), "ok")
    return redirect(_back(url_for("console.webhooks_page")))  # type: ignore[return-value]


def _back(default: str) -> str:
    back = request.form.get("back") or ""
    return back if back.startswith("/console/webhooks") and not back.startswith("//") else default


@bp.route("/webhooks/<int:webhook_id>/test", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def webhook_test(webhook_id: int) -> Response:
    principal = _unscoped_writer()
    session = db_session()
    conf = settings()
    outgoing = trial_delivery(_webhook_or_404(webhook_id), secret_key=conf.secret_key)
    session.rollback()  # no transaction stays open while the receiver answers
    outcome = post_delivery(
        outgoing, timeout=conf.webhook_timeout_seconds, allow_networks=conf.webhook_allow_networks
    )
    record_event(
        session,
        principal.actor,
        "webhook.test_sent",
        "webhook",
        webhook_id,
        {"status_code": outcome.status_code, "error": outcome.error},
    )
    session.commit()
    if outcome.ok:
        flash(_("Test delivery answered HTTP %(status)s.", status=outcome.status_code), "ok")
    else:
        flash(_("Test delivery failed: %(error)s", error=outcome.error or ""), "error")
    return redirect(_back(url_for("console.webhooks_page")))  # type: ignore[return-value]


@bp.route("/webhooks/<int:webhook_id>/deliveries")
@needs(Permission.SETTINGS_READ)
def webhook_deliveries(webhook_id: int) -> str:
    """The delivery log: every alert sent to the webhook, its state, and each attempt (time, HTTP
    status, error, duration); the signed test sends from the audit trail."""
    principal = current_principal()
    session = db_session()
    webhook = _webhook_or_404(webhook_id)
    raw_page = request.args.get("page", "1")
    page = int(raw_page) if raw_page.isdecimal() and 0 < len(raw_page) < 7 and int(raw_page) > 0 else 1
    stmt = (
        select(WebhookDelivery)
        .join(Alert, Alert.id == WebhookDelivery.alert_id)
        .where(WebhookDelivery.webhook_id == webhook.id)
        .order_by(WebhookDelivery.id.desc())
    )
    if principal.scope_unit_ids is not None:
        stmt = stmt.where(Alert.org_unit_id.in_(sorted(principal.scope_unit_ids)))
    result = _paged(session, stmt, page, DELIVERIES_PER_PAGE)
    alerts = {
        a.id: a
        for a in session.scalars(select(Alert).where(Alert.id.in_([d.alert_id for d in result.items])))
    }
    tests = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "webhook.test_sent", AuditEvent.target_id == str(webhook.id))
        .order_by(AuditEvent.seq.desc())
        .limit(10)
    ).all()
    return render_template(
        "console/webhook_deliveries.html",
        webhook=webhook,
        result=result,
        alerts=alerts,
        tests=tests,
        may_write=principal.can(Permission.SETTINGS_WRITE) and not principal.scoped,
    )
