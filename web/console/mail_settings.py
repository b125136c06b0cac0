"""Settings → mail server (issue #19): host, port, TLS mode, user, password (sealed at rest),
sender address, and a "send test mail" button. Administrators of the whole fleet only; every
change and every test mail is audited. The notifier (alert e-mail, approvers' mails) uses what
is saved here at its next run, no restart."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from mdm.doors.appctx import db_session, settings
from mdm.ground.audit import record_event
from mdm.ground.models import SmtpTls
from mdm.services.mail.server import (
    FIELDS,
    MailServerInputError,
    mail_server,
    save_mail_server,
    stored_row,
)
from mdm.services.mail.smtp import send_mail
from web.auth.users import UserError, clean_email
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.rbac import Permission

LABELS = {
    "host": _l("Mail server (host name or address)"),
    "port": _l("Port"),
    "tls_mode": _l("Encryption"),
    "username": _l("User name (blank: no sign-in)"),
    "password": _l("Password"),
    "from_address": _l("Sender address"),
}
TLS_LABELS = {
    SmtpTls.STARTTLS: _l("STARTTLS (usually port 587)"),
    SmtpTls.TLS: _l("TLS from the start (SMTPS, usually port 465)"),
    SmtpTls.NONE: _l("None (a relay on the local network, port 25)"),
}
PROBLEMS = {
    "host": _l("must be a host name or an address"),
    "port": _l("must be a port number from 1 to 65535"),
    "tls_mode": _l("choose one of the listed modes"),
    "username": _l("one line of at most 255 characters"),
    "password": _l("one line of at most 255 characters"),
    "from_address": _l("must be an e-mail address (required with a mail server)"),
}


def _admin_of_the_fleet() -> Any:
    principal = current_principal()
    if principal.scoped or principal.role != "admin":
        abort(403)  # one mail server for every station, set by administrators only
    return principal


def _page(errors: dict[str, list[str]] | None = None, form: dict[str, str] | None = None) -> Any:
    session = db_session()
    row = stored_row(session)
    server = mail_server(session, settings())
    values = form if form is not None else {name: getattr(row, name) if row else None for name in FIELDS}
    html = render_template(
        "console/mail_settings.html",
        row=row,
        server=server,
        values={k: ("" if v is None else str(v)) for k, v in values.items()},
        labels=LABELS,
        tls_labels=TLS_LABELS,
        errors=errors or {},
        password_stored=row is not None and row.password_sealed is not None,
        test_to=request.form.get("to") or (g.user.email or ""),
    )
    return (html, 400) if errors else html


@bp.route("/settings/mail")
@needs(Permission.SETTINGS_WRITE)
def mail_settings_page() -> Any:
    _admin_of_the_fleet()
    return _page()


@bp.route("/settings/mail", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def mail_settings_save() -> Any:
    principal = _admin_of_the_fleet()
    session = db_session()
    form = request.form
    values = {name: (form.get(name) or "").replace("\x00", "") for name in FIELDS}
    try:
        changed = save_mail_server(
            session,
            settings(),
            principal.actor,
            values,
            password=form.get("password") or None,
            clear_password=form.get("clear_password") == "yes",
        )
    except MailServerInputError as exc:
        session.rollback()
        errors = {name: [str(PROBLEMS.get(name, name))] for name in exc.fields}
        return _page(errors, values)
    session.commit()
    if changed:
        names = ", ".join(str(LABELS.get(n, n)) for n in changed)
        flash(_("Mail server saved: %(fields)s.", fields=names), "ok")
    else:
        flash(_("Nothing changed."), "ok")
    return redirect(url_for("console.mail_settings_page"))


@bp.route("/settings/mail/test", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def mail_settings_test() -> Any:
    """Send one mail now through the saved server, and say what the server answered."""
    principal = _admin_of_the_fleet()
    session = db_session()
    try:
        to = clean_email(request.form.get("to"))
    except UserError:
        to = None
    if to is None:
        return _page({"to": [_("Enter the address to send the test mail to.")]}, None)
    server = mail_server(session, settings())
    if server is None:
        flash(_("No mail server is set: save one first."), "error")
        return redirect(url_for("console.mail_settings_page"))
    error = send_mail(
        server,
        [to],
        "[Hikeshi MDM] テストメール / Test mail",
        "Hikeshi MDM のメール送信設定のテストです。\nThis is a test of Hikeshi MDM's mail settings.\n",
        timeout=15.0,
    )
    record_event(
        session,
        principal.actor,
        "smtp.test_sent",
        "settings",
        "smtp",
        {"to": to, "host": server.host, "port": server.port, "error": error},
    )
    session.commit()
    if error is None:
        flash(_("Test mail sent to %(to)s through %(host)s.", to=to, host=server.host), "ok")
    else:
        flash(_("The test mail was not sent: %(error)s", error=error), "error")
    return redirect(url_for("console.mail_settings_page"))
