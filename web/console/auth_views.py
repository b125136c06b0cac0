"""Login, second factor, logout, password change, TOTP enrollment, language switch."""

from __future__ import annotations

from flask import Response, g, make_response, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _

from mdm.doors.appctx import client_ip, db_session, settings
from mdm.ground import clock
from mdm.ground.audit import Actor
from web.auth import login as login_service
from web.auth import totp
from web.auth.sessions import rotate
from web.auth.users import UserError, change_password, confirm_totp, pending_totp_seed, replace_recovery_codes
from web.console.blueprint import bp
from web.console.forms import CodeForm, LoginForm, PasswordChangeForm, load_form
from web.console.guard import clear_session_cookie, safe_next, set_session_cookie
from web.i18n import LOCALE_COOKIE, LOCALES, N_
from web.qr import qr_svg

SESSION_PROBLEMS = {
    "idle": N_("Your session ended after a period of inactivity. Please sign in again."),
    "expired": N_("Your session reached its maximum length. Please sign in again."),
    "disabled": N_("This account has been disabled."),
}


def _user_actor() -> Actor:
    user = g.user
    return Actor(f"user:{user.username}", user.role, client_ip())


def _locked_message(locked_until: object) -> str:
    return _(
        "Too many failed attempts. Sign-in is locked until %(time)s.",
        time=format_datetime(locked_until, "HH:mm:ss"),
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    if g.get("user") is not None and request.method == "GET":
        return redirect(url_for("console.dashboard"))  # type: ignore[return-value]
    notice = None
    problem = g.get("session_problem") or request.args.get("ended")
    if problem in SESSION_PROBLEMS:
        notice = _(SESSION_PROBLEMS[problem])
    if request.method == "GET":
        return render_template("console/login.html", notice=notice, errors={}, username="")
    data, errors = load_form(LoginForm(), request.form)
    if errors:
        return render_template("console/login.html", errors=errors, username=request.form.get("username", ""))
    session = db_session()
    # The attempt is counted and committed before the password is checked (web.auth.lockout).
    gate = login_service.admit_password_attempt(session, data["username"], source_ip=client_ip())
    session.commit()
    result = login_service.password_login(
        session,
        gate,
        data["password"],
        settings=settings(),
        code=data.get("code") or None,
        source_ip=client_ip(),
        user_agent=request.headers.get("User-Agent"),
    )
    session.commit()
    if not result.ok:
        message = (
            _locked_message(result.locked_until) if result.locked_until else _("Wrong user name or password.")
        )
        return make_response(
            render_template(
                "console/login.html",
                errors={"_form": [message]},
                username=data["username"],
                locked=result.locked_until is not None,
            ),
            401,
        )
    assert result.token is not None
    target = safe_next(request.args.get("next"))
    response = redirect(target)
    return set_session_cookie(response, result.token)  # type: ignore[arg-type]


@bp.route("/login/totp", methods=["GET", "POST"])
def login_totp() -> Response | str:
    if request.method == "GET":
        return render_template("console/login_totp.html", errors={})
    data, errors = load_form(CodeForm(), request.form)
    if not errors and not (data.get("code") or data.get("recovery_code")):
        errors = {"code": [_("Enter the 6-digit code from your authenticator app.")]}
    if errors:
        return render_template("console/login_totp.html", errors=errors)
    session = db_session()
    result = login_service.second_factor(
        session,
        g.web_session,
        settings(),
        code=data.get("code"),
        recovery_code=data.get("recovery_code"),
        source_ip=client_ip(),
    )
    session.commit()
    if not result.ok:
        message = _locked_message(result.locked_until) if result.locked_until else _("The code is not valid.")
        return make_response(render_template("console/login_totp.html", errors={"code": [message]}), 401)
    assert result.token is not None
    return set_session_cookie(redirect(url_for("console.dashboard")), result.token)  # type: ignore[arg-type]


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    if g.get("web_session") is not None:
        session = db_session()
        login_service.logout(session, g.web_session, source_ip=client_ip())
        session.commit()
    return clear_session_cookie(redirect(url_for("console.login")))  # type: ignore[arg-type]


@bp.route("/account")
def account() -> str:
    from web.auth.users import unused_recovery_codes

    return render_template("console/account.html", recovery_left=unused_recovery_codes(g.user))


@bp.route("/account/password", methods=["GET", "POST"])
def account_password() -> Response | str:
    forced = g.user.must_change_password
    if request.method == "GET":
        return render_template("console/password.html", errors={}, forced=forced)
    data, errors = load_form(PasswordChangeForm(), request.form)
    if not errors and data["new_password"] != data["new_password_again"]:
        errors = {"new_password_again": [_("The two new passwords differ.")]}
    if errors:
        return render_template("console/password.html", errors=errors, forced=forced)
    session = db_session()
    try:
        change_password(
            session,
            g.user,
            current=data["current_password"],
            new=data["new_password"],
            actor=_user_actor(),
            keep_session_id=g.web_session.id,
        )
    except UserError as exc:
        return render_template("console/password.html", errors={exc.field: [_(str(exc))]}, forced=forced)
    token = rotate(g.web_session)
    session.commit()
    return set_session_cookie(redirect(url_for("console.dashboard")), token)  # type: ignore[arg-type]


@bp.route("/account/totp", methods=["GET", "POST"])
def account_totp() -> Response | str:
    user = g.user
    session = db_session()
    conf = settings()
    if user.totp_enabled:
        return redirect(url_for("console.account"))  # type: ignore[return-value]
    seed = pending_totp_seed(session, user, conf)
    session.commit()
    uri = totp.provisioning_uri(seed, user.username)
    page = {"seed": seed, "qr_svg": qr_svg(uri, scale=5, title=_("Authenticator QR code")), "uri": uri}
    if request.method == "GET":
        return render_template("console/totp_setup.html", errors={}, **page)
    data, errors = load_form(CodeForm(), request.form)
    if errors or not data.get("code"):
        return render_template(
            "console/totp_setup.html", errors=errors or {"code": [_("Enter the 6-digit code.")]}, **page
        )
    try:
        codes = confirm_totp(session, user, data["code"], conf, actor=_user_actor())
    except UserError:
        return render_template(
            "console/totp_setup.html",
            errors={"code": [_("The code is not valid; check the time on your phone and try again.")]},
            **page,
        )
    g.web_session.mfa_verified_at = clock.now()
    token = rotate(g.web_session)
    session.commit()
    response = make_response(render_template("console/recovery_codes.html", codes=codes))
    return set_session_cookie(response, token)


@bp.route("/account/recovery-codes", methods=["POST"])
def account_recovery_codes() -> Response | str:
    from web.console.guard import ask_confirmation, confirmed

    if not g.user.totp_enabled:
        return redirect(url_for("console.account"))  # type: ignore[return-value]
    if not confirmed():
        return ask_confirmation(
            _("New recovery codes"),
            _("This replaces all your recovery codes: the old ones stop working at once."),
            action_label=_("Replace recovery codes"),
        )
    session = db_session()
    codes = replace_recovery_codes(session, g.user, settings())
    from mdm.ground.audit import record_event

    record_event(session, _user_actor(), "user.recovery_codes_replaced", "user", g.user.id, {})
    session.commit()
    return render_template("console/recovery_codes.html", codes=codes)


@bp.route("/lang/<code>")
def set_language(code: str) -> Response:
    from web.console.guard import safe_next as safe

    response = redirect(safe(request.args.get("next")))
    if code in LOCALES:
        response.set_cookie(LOCALE_COOKIE, code, max_age=365 * 86400, samesite="Lax", httponly=True, path="/")
    return response  # type: ignore[return-value]
