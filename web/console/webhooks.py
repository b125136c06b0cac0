"""Webhooks in the console: list with delivery counts, create (the secret is shown once),
disable or enable, send a signed test. Same services and checks as the API and CLI; audited."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from mdm.doors.appctx import db_session, settings
from mdm.ground.audit import record_event
from mdm.ground.models import DeliveryStatus, Webhook, WebhookDelivery
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
from web.rbac import Permission


def _page(errors: dict[str, list[str]] | None = None, form: dict[str, str] | None = None) -> str:
    session = db_session()
    failed = dict(
        session.execute(
            select(WebhookDelivery.webhook_id, func.count())
            .where(WebhookDelivery.status == DeliveryStatus.FAILED)
            .group_by(WebhookDelivery.webhook_id)
        ).all()
    )
    hooks = list_webhooks(session)
    return render_template(
        "console/webhooks.html",
        hooks=hooks,
        failed=failed,
        recent={h.id: recent_deliveries(session, h.id, limit=5) for h in hooks},
        errors=errors or {},
        form=form or {},
    )


def _webhook_or_404(webhook_id: int) -> Webhook:
    from flask import abort

    webhook = db_session().get(Webhook, webhook_id)
    if webhook is None:
        abort(404)
    return webhook


@bp.route("/webhooks")
@needs(Permission.SETTINGS_READ)
def webhooks_page() -> str:
    return _page()


@bp.route("/webhooks", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def webhook_create() -> str:
    session = db_session()
    conf = settings()
    name, url = request.form.get("name", ""), request.form.get("url", "")
    try:
        hook, secret = create_webhook(
            session,
            current_principal().actor,
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
    session = db_session()
    set_webhook_enabled(session, current_principal().actor, _webhook_or_404(webhook_id), action == "enable")
    session.commit()
    flash(_("Done."), "ok")
    return redirect(url_for("console.webhooks_page"))  # type: ignore[return-value]


@bp.route("/webhooks/<int:webhook_id>/test", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def webhook_test(webhook_id: int) -> Response:
    session = db_session()
    conf = settings()
    outgoing = trial_delivery(_webhook_or_404(webhook_id), secret_key=conf.secret_key)
    session.rollback()  # no transaction stays open while the receiver answers
    outcome = post_delivery(
        outgoing, timeout=conf.webhook_timeout_seconds, allow_networks=conf.webhook_allow_networks
    )
    record_event(
        session,
        current_principal().actor,
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
    return redirect(url_for("console.webhooks_page"))  # type: ignore[return-value]
