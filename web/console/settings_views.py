"""Settings: the APNs push certificate (upload, topic, days left) and the built-in CA."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from mdm.doors.appctx import db_session, settings
from mdm.ground.push.certificates import (
    PushCertificateError,
    TopicChangeRefused,
    active_push_certificate,
    days_left,
    import_push_certificate,
    read_push_certificate,
)
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.console.push_text import push_certificate_warning
from web.rbac import Permission

MAX_CERT_FILE = 64 * 1024


def _ca_summary() -> list[object]:
    try:
        from mdm.ground.ca import ca_summary
    except ImportError:  # pragma: no cover - enrollment is part of the distribution
        return []
    return list(ca_summary(db_session()))


def _page(errors: dict[str, list[str]] | None = None) -> str:
    session = db_session()
    cert = active_push_certificate(session)
    return render_template(
        "console/settings.html",
        cert=cert,
        days_left=days_left(cert) if cert else None,
        warning=push_certificate_warning(cert),
        cas=_ca_summary(),
        conf=settings(),
        errors=errors or {},
    )


@bp.route("/settings")
@needs(Permission.SETTINGS_READ)
def settings_page() -> str:
    return _page()


@bp.route("/settings/push-certificate", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def push_certificate_upload() -> Response | str:
    session = db_session()
    upload = request.files.get("certificate")
    data = upload.read(MAX_CERT_FILE + 1) if upload else b""
    if not data:
        return _page({"certificate": [_("Choose the certificate file (PEM with its key, or .p12).")]})
    if len(data) > MAX_CERT_FILE:
        return _page({"certificate": [_("The file is too large to be a push certificate.")]})
    current = active_push_certificate(session)
    if current is not None and request.form.get("confirm_replace") != "yes":
        return _page(
            {"confirm_replace": [_("Tick the box to confirm that the current certificate will be replaced.")]}
        )
    password = request.form.get("password") or None
    force = request.form.get("force_topic") == "yes"
    try:
        loaded = read_push_certificate(data, password.encode() if password else None)
        row = import_push_certificate(
            session, loaded, secret_key=settings().secret_key, actor=current_principal().actor, force=force
        )
    except TopicChangeRefused as exc:
        session.rollback()
        return _page({"force_topic": [str(exc)]})
    except PushCertificateError as exc:
        session.rollback()
        return _page({"certificate": [str(exc)]})
    session.commit()
    flash(_("Imported the push certificate for %(topic)s.", topic=row.topic), "ok")
    return redirect(url_for("console.settings_page"))  # type: ignore[return-value]
