"""The push certificate request, step by step, for a new HQ (or a yearly renewal): make the key
and the request here, download what Apple's portal (or a community signing service) takes, bring
back the encrypted answer or Apple's certificate, and see the certificate in use.

Administrators only (settings.write, unscoped); every step that changes something is audited by
the service it calls (push_certificate.requested / .request_decrypted / .imported). The private
key never leaves the server: it is sealed in the instance folder until Apple's certificate comes
back, then stored sealed in the database (mdm.services.push_cert_request).
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from mdm.doors.appctx import db_session, settings
from mdm.ground.audit import record_event
from mdm.ground.push.certificates import (
    PushCertificateError,
    TopicChangeRefused,
    active_push_certificate,
    days_left,
    import_push_certificate,
)
from mdm.services.push_cert_request import (
    CSR_FILE,
    PORTAL_URL,
    UPLOAD_FILE,
    PushRequestError,
    certificate_with_stored_key,
    decrypt_signed_request,
    encryption_certificate,
    forget_request,
    keep_request_file,
    new_request,
    pending_requests,
    request_file,
    vendor_configured,
    vendor_signed_from_settings,
)
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.console.push_text import push_certificate_warning
from web.rbac import Permission

MAX_UPLOAD = 64 * 1024
PAGE = "console.push_cert_request_page"
# Download names (what the HQ sees) → the files kept for the request.
DOWNLOADS = {
    "push-request.csr": (CSR_FILE, "application/pkcs10"),
    "push-request.b64": (UPLOAD_FILE, "text/plain"),
    "push-request-encryption.pem": ("encryption.pem", "application/x-pem-file"),
}


def _admin() -> Any:
    principal = current_principal()
    if principal.scoped:
        abort(403)  # one push certificate for the whole HQ
    return principal


def _page(errors: dict[str, list[str]] | None = None, status: int = 200) -> Any:
    conf = settings()
    cert = active_push_certificate(db_session())
    html = render_template(
        "console/push_cert_request.html",
        cert=cert,
        days_left=days_left(cert) if cert else None,
        warning=push_certificate_warning(cert),
        vendor=vendor_configured(conf),
        pending=pending_requests(conf),
        portal_url=PORTAL_URL,
        errors=errors or {},
    )
    return (html, status) if status != 200 else html


def _upload(field: str) -> bytes | None:
    upload = request.files.get(field)
    data = upload.read(MAX_UPLOAD + 1) if upload else b""
    return data if data and len(data) <= MAX_UPLOAD else None


@bp.route("/settings/push-certificate/request")
@needs(Permission.SETTINGS_WRITE)
def push_cert_request_page() -> Any:
    _admin()
    return _page()


@bp.route("/settings/push-certificate/request", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def push_cert_request_new() -> Any:
    principal = _admin()
    session = db_session()
    conf = settings()
    email = (request.form.get("email") or "").strip() or None
    try:
        pending = new_request(session, conf, actor=principal.actor, email=email)
    except PushRequestError:
        session.rollback()
        return _page({"email": [_("Enter an e-mail address (name@domain, ASCII), or leave it blank.")]}, 400)
    try:
        keep_request_file(conf, pending.key_id, CSR_FILE, pending.csr_pem)
        if vendor_configured(conf):
            keep_request_file(
                conf, pending.key_id, UPLOAD_FILE, vendor_signed_from_settings(conf, pending) + b"\n"
            )
        else:
            encryption_certificate(conf, pending)
    except PushRequestError as exc:
        session.rollback()
        forget_request(conf, pending.key_id)
        return _page(
            {"vendor": [_("The MDM vendor certificate cannot be used: %(detail)s", detail=str(exc))]}, 400
        )
    session.commit()
    flash(_("The request is ready: download its files below."), "ok")
    return redirect(url_for(PAGE) + "#pending-requests")


@bp.route("/settings/push-certificate/request/<string(length=64):key_id>/<name>")
@needs(Permission.SETTINGS_WRITE)
def push_cert_request_download(key_id: str, name: str) -> Response:
    _admin()
    if name not in DOWNLOADS:
        abort(404)
    stored, mimetype = DOWNLOADS[name]
    data = request_file(settings(), key_id, stored)
    if data is None:
        abort(404)
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/settings/push-certificate/request/decrypt", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def push_cert_request_decrypt() -> Any:
    principal = _admin()
    session = db_session()
    conf = settings()
    data = _upload("answer")
    if data is None:
        return _page({"answer": [_("Choose the encrypted file the signing service sent back.")]}, 400)
    try:
        upload, key_id = decrypt_signed_request(conf, data)
        keep_request_file(conf, key_id, UPLOAD_FILE, upload)
    except PushRequestError as exc:
        return _page({"answer": [_("The encrypted answer cannot be used: %(detail)s", detail=str(exc))]}, 400)
    record_event(
        session,
        principal.actor,
        "push_certificate.request_decrypted",
        "push_certificate_request",
        key_id[:16],
    )
    session.commit()
    flash(_("Opened the signing service's answer: download push-request.b64 below."), "ok")
    return redirect(url_for(PAGE) + "#pending-requests")


@bp.route("/settings/push-certificate/request/import", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def push_cert_request_import() -> Any:
    principal = _admin()
    session = db_session()
    conf = settings()
    data = _upload("certificate")
    if data is None:
        return _page({"certificate": [_("Choose the certificate file Apple's portal gave you (.pem).")]}, 400)
    force = request.form.get("force_topic") == "yes"
    try:
        loaded, pending = certificate_with_stored_key(session, conf, data)
        row = import_push_certificate(
            session, loaded, secret_key=conf.secret_key, actor=principal.actor, force=force
        )
    except TopicChangeRefused as exc:
        session.rollback()
        return _page({"force_topic": [str(exc)]}, 400)
    except (PushCertificateError, PushRequestError) as exc:
        session.rollback()
        return _page(
            {"certificate": [_("The certificate cannot be imported: %(detail)s", detail=str(exc))]}, 400
        )
    topic = row.topic
    session.commit()
    if pending is not None:  # the key now lives sealed in the database
        forget_request(conf, pending)
    flash(_("Imported the push certificate for %(topic)s.", topic=topic), "ok")
    return redirect(url_for(PAGE) + "#current-certificate")
