"""Settings: the APNs push certificate (upload, topic, days left), the built-in CA, and the
Android provisioning settings (what the device-owner QR code installs; stored, no restart)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from enrollment.android_qr import WIFI_SECURITY_TYPES
from enrollment.android_settings import (
    FIELDS as ANDROID_FIELDS,
)
from enrollment.android_settings import (
    ProvisioningInputError,
    checksum_of_certificate,
    effective_settings,
    provisioning_problems,
    save_provisioning,
    settings_view,
    wifi_password_state,
)
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


ANDROID_LABELS = {
    "agent_package": _l("Agent package name"),
    "agent_component": _l("Device admin component (package/receiver)"),
    "agent_download_url": _l("Agent APK download URL (https://)"),
    "agent_signature_checksum": _l("Signing certificate checksum (SHA-256, URL-safe base64)"),
    "signing_certificate": _l("…or the agent's signing certificate (PEM or DER)"),
    "wifi_ssid": _l("Wi-Fi joined during setup (SSID)"),
    "wifi_security": _l("Wi-Fi security"),
    "wifi_password": _l("Wi-Fi password"),
    "locale": _l("Language of the tablet (e.g. ja_JP)"),
    "time_zone": _l("Time zone (e.g. Asia/Tokyo)"),
}
# Why a field keeps the QR code from being made, in the console's language.
ANDROID_PROBLEMS = {
    "agent_package": _l("not set"),
    "agent_component": _l("must be the package name, a slash and the receiver class"),
    "agent_download_url": _l("must be the https:// address of the agent APK"),
    "agent_signature_checksum": _l("not set (enter the checksum or upload the signing certificate)"),
    "wifi_security": _l("must be one of NONE, WEP, WPA, EAP"),
}


def android_problem(name: str, detail: str) -> str:
    """The console's own words when it has them; the service's English detail otherwise."""
    label = ANDROID_PROBLEMS.get(name)
    return str(label) if label is not None else detail


def _page(
    errors: dict[str, list[str]] | None = None, android_form: dict[str, str] | None = None, status: int = 200
) -> Any:
    session = db_session()
    principal = current_principal()
    conf = settings()
    cert = active_push_certificate(session)
    effective = effective_settings(session, conf)
    html = render_template(
        "console/settings.html",
        cert=cert,
        days_left=days_left(cert) if cert else None,
        warning=push_certificate_warning(cert),
        cas=_ca_summary(),
        conf=conf,
        errors=errors or {},
        android=settings_view(session, conf),
        android_labels=ANDROID_LABELS,
        android_problems={
            name: android_problem(name, why) for name, why in provisioning_problems(effective).items()
        },
        android_form=android_form,
        wifi_password_state=wifi_password_state(session, conf),
        wifi_security_types=WIFI_SECURITY_TYPES,
        may_edit_android=principal.can(Permission.SETTINGS_WRITE) and not principal.scoped,
    )
    if status != 200 or errors:
        return html, status if status != 200 else 400
    return html


@bp.route("/settings")
@needs(Permission.SETTINGS_READ)
def settings_page() -> Any:
    return _page()


@bp.route("/settings/push-certificate", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def push_certificate_upload() -> Any:
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
    return redirect(url_for("console.settings_page"))


@bp.route("/settings/android", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def android_settings_save() -> Any:
    """Store what the Android provisioning QR code installs; blank falls back to the server's
    Android setting from the environment. Audited as android.provisioning_changed (never the password)."""
    principal = current_principal()
    if principal.scoped:
        abort(403)  # one setting for every station
    session = db_session()
    form = request.form
    values: dict[str, str | None] = {f.name: (form.get(f.name) or "").strip() or None for f in ANDROID_FIELDS}
    upload = request.files.get("signing_certificate")
    try:
        if upload is not None and upload.filename:
            data = upload.read(MAX_CERT_FILE + 1)
            if len(data) > MAX_CERT_FILE:
                raise ProvisioningInputError({"signing_certificate": ["too large"]})
            values["agent_signature_checksum"] = checksum_of_certificate(data)
        changed = save_provisioning(
            session,
            settings(),
            principal.actor,
            values,
            wifi_password=form.get("wifi_password") or None,
            clear_wifi_password=form.get("clear_wifi_password") == "yes",
        )
    except ProvisioningInputError as exc:
        session.rollback()
        errors = {
            name: [_("Not accepted: %(detail)s", detail=" ".join(messages))]
            for name, messages in exc.fields.items()
        }
        kept = {k: v for k, v in form.items() if k != "wifi_password"}
        return _page(errors, kept, status=400)
    session.commit()
    if changed:
        names = ", ".join(str(ANDROID_LABELS.get(n, n)) for n in changed)
        flash(_("Android provisioning saved: %(fields)s.", fields=names), "ok")
    else:
        flash(_("Nothing changed."), "ok")
    return redirect(url_for("console.settings_page") + "#android-provisioning")
