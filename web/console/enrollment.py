"""Enrollment tokens: create (QR code shown once), print the sheet, revoke."""

from __future__ import annotations

from datetime import timedelta

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup

from enrollment import android_qr
from enrollment.android_settings import effective_settings, require_usable_provisioning
from enrollment.tokens import TokenError, create_token, enrollment_url, list_tokens, revoke_token, token_state
from mdm.doors.appctx import db_session, settings
from mdm.ground.models import EnrollmentToken, TokenPlatform
from web.console.blueprint import bp
from web.console.forms import EnrollmentTokenForm, load_form
from web.console.guard import ask_confirmation, confirmed, current_principal, needs
from web.qr import qr_svg
from web.queries import visible_enrollment_token, visible_unit, visible_units
from web.rbac import Permission


def _page(errors: dict[str, list[str]] | None = None) -> str:
    principal = current_principal()
    session = db_session()
    scope = principal.scope_unit_ids
    tokens = list_tokens(session, org_unit_ids=set(scope) if scope is not None else None)
    return render_template(
        "console/enrollment_tokens.html",
        tokens=[(t, token_state(t)) for t in tokens],
        units=visible_units(session, principal),
        errors=errors or {},
    )


@bp.route("/enrollment-tokens")
@needs(Permission.ENROLLMENT_READ)
def enrollment_tokens() -> str:
    return _page()


@bp.route("/enrollment-tokens", methods=["POST"])
@needs(Permission.ENROLLMENT_WRITE)
def enrollment_token_create() -> str:
    principal = current_principal()
    session = db_session()
    data, errors = load_form(EnrollmentTokenForm(), request.form)
    if not errors and visible_unit(session, principal, data["org_unit_id"]) is None:
        errors = {"org_unit_id": [_("Unknown unit.")]}
    if errors:
        return _page(errors)
    try:
        if data["platform"] == "android":
            require_usable_provisioning(session, settings())  # issue #19 item 8
        created = create_token(
            session,
            {
                "org_unit_id": data["org_unit_id"],
                "platform": data["platform"],
                "max_uses": data["max_uses"],
                "note": data.get("note"),
                "expires_in": timedelta(days=data["expires_in_days"]),
            },
            actor=principal.actor,
        )
    except TokenError as exc:
        session.rollback()
        return _page(
            {k: [str(m) for m in v] if isinstance(v, list) else [str(v)] for k, v in exc.fields.items()}
        )
    session.commit()
    if created.token.platform == TokenPlatform.ANDROID:
        return _android_token_created(created.token, created.secret)
    url = enrollment_url(settings(), created.secret)
    return render_template(
        "console/enrollment_token_created.html",
        token=created.token,
        url=url,
        qr_svg=qr_svg(url, scale=5, title=_("Enrollment QR code")),
        sheet_url=url + "/sheet",
    )


def _android_token_created(token: EnrollmentToken, secret: str) -> str:
    """The device-owner provisioning QR code (shown once), or which settings it still needs."""
    try:
        svg = Markup(android_qr.qr_svg_inline(effective_settings(db_session(), settings()), secret, scale=4))  # noqa: S704 - segno output
    except android_qr.ProvisioningNotConfigured as exc:
        return render_template(
            "console/enrollment_token_created.html", token=token, android=True, missing=sorted(exc.settings)
        )
    return render_template(
        "console/enrollment_token_created.html",
        token=token,
        android=True,
        qr_svg=svg,
        sheet_url=url_for("android_agent.provisioning_sheet", secret=secret),
    )


@bp.route("/enrollment-tokens/<int:token_id>/revoke", methods=["POST"])
@needs(Permission.ENROLLMENT_WRITE)
def enrollment_token_revoke(token_id: int) -> Response | str:
    principal = current_principal()
    session = db_session()
    token = visible_enrollment_token(session, principal, token_id)
    if token is None:
        abort(404)
    if not confirmed():
        return ask_confirmation(
            _("Revoke enrollment token"),
            _(
                "This revokes enrollment token #%(id)d of %(unit)s at once: its QR code can no longer enroll "
                "a tablet (%(used)d of %(max)d uses taken). Tablets already enrolled are not affected.",
                id=token.id,
                unit=token.org_unit.name_ja,
                used=token.use_count,
                max=token.max_uses,
            ),
            action_label=_("Revoke"),
        )
    revoke_token(session, token, actor=principal.actor, reason=request.form.get("reason") or None)
    session.commit()
    flash(_("Enrollment token #%(id)d revoked.", id=token.id), "ok")
    return redirect(url_for("console.enrollment_tokens"))  # type: ignore[return-value]
