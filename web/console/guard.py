"""Who is using the console, and what they may do now.

Every console request passes `load_console_user` first: it finds the server-side session behind
the cookie, ends it on idle timeout or a disabled user, enforces the login steps (second factor,
forced password change, TOTP enrollment), and checks the CSRF token of every unsafe request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Response, abort, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from mdm.doors.appctx import client_ip, db_session, settings
from mdm.ground.models import User, WebSession
from web import csrf
from web.auth.sessions import cookie_name, load_session, secure_cookies, touch
from web.rbac import Permission, Principal, permissions_of, totp_required
from web.scope import scope_of

F = TypeVar("F", bound=Callable[..., Any])

# Endpoints reachable without a session, and during each login step.
PUBLIC = frozenset({"console.login", "console.set_language", "console.static", "console.root"})
STEP_ENDPOINTS = {
    "totp": frozenset({"console.login_totp", "console.logout"}),
    "password": frozenset({"console.account_password", "console.logout"}),
    "totp_setup": frozenset({"console.account_totp", "console.logout"}),
}
STEP_TARGETS = {
    "totp": "console.login_totp",
    "password": "console.account_password",
    "totp_setup": "console.account_totp",
}
POLL_HEADER = "X-Hikeshi-Poll"


def next_step(user: User, web_session: WebSession) -> str | None:
    """What the user must still do before the console opens, in order; None when done."""
    if user.totp_enabled and web_session.mfa_verified_at is None:
        return "totp"
    if user.must_change_password:
        return "password"
    if totp_required(user.role) and not user.totp_enabled:
        return "totp_setup"
    return None


def principal_for(user: User) -> Principal:
    return Principal(
        kind="user",
        id=user.id,
        name=user.username,
        role=user.role,
        org_unit_id=user.org_unit_id,
        scope_unit_ids=scope_of(db_session(), user.org_unit_id),
        source_ip=client_ip(),
        permissions=permissions_of(user.role),
    )


def _wants_json() -> bool:
    return request.headers.get(POLL_HEADER) == "1" or request.accept_mimetypes.best == "application/json"


def load_console_user() -> BaseResponse | None:
    if not request.path.startswith("/console"):
        return None
    conf = settings()
    request.max_content_length = 5 * 1024 * 1024
    g.principal = None
    g.user = None
    g.web_session = None
    g.session_token = None
    session = db_session()
    token = request.cookies.get(cookie_name(conf))
    check = load_session(session, token, conf)
    if check.problem in ("idle", "expired", "disabled"):
        session.commit()  # the session ends now, whatever happens next
        g.session_problem = check.problem
    endpoint = request.endpoint or ""
    if check.web_session is not None:
        web_session = check.web_session
        g.web_session = web_session
        g.session_token = token
        g.user = web_session.user
        if request.headers.get(POLL_HEADER) != "1":
            # A page left open polling for command states is not activity: it must still time out.
            touch(web_session)
            if session.dirty:
                session.commit()
    try:
        csrf.check_request(conf.secret_key, conf.public_url)
    except csrf.CsrfError as exc:
        abort(
            400,
            description=_(
                "The form expired or did not come from this site (%(reason)s). Reload and try again.",
                reason=str(exc),
            ),
        )
    if endpoint in PUBLIC or endpoint == "":
        return None
    if g.user is None:
        if _wants_json():
            response = jsonify(error={"code": "unauthenticated", "message": "session ended"})
            response.status_code = 401
            return response
        ended = g.get("session_problem")
        return redirect(url_for("console.login", next=_safe_next(request.full_path), ended=ended))
    step = next_step(g.user, g.web_session)
    g.login_step = step
    if step is not None:
        if endpoint not in STEP_ENDPOINTS[step]:
            return redirect(url_for(STEP_TARGETS[step]))
        return None
    g.principal = principal_for(g.user)
    return None


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site may be a redirect target (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console") or target.startswith("//"):
        return None
    return target.rstrip("?")


def safe_next(target: str | None) -> str:
    return _safe_next(target) or url_for("console.dashboard")


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:
        abort(403)
    return principal


def needs(permission: Permission) -> Callable[[F], F]:
    """Refuse (403 page) a console view to a user whose role lacks `permission`."""

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_principal().can(permission):
                abort(403)
            return fn(*args, **kwargs)

        wrapper.__dict__["_hikeshi_permission"] = permission  # as web/api/base.py marks its views
        return wrapper  # type: ignore[return-value]

    return decorate


def set_session_cookie(response: Response, token: str) -> Response:
    conf = settings()
    response.set_cookie(
        cookie_name(conf),
        token,
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(conf),
        path="/",
        max_age=conf.session_max_hours * 3600,
    )
    return response


def clear_session_cookie(response: Response) -> Response:
    conf = settings()
    response.delete_cookie(
        cookie_name(conf), path="/", secure=secure_cookies(conf), httponly=True, samesite="Lax"
    )
    return response


def confirmed() -> bool:
    return request.form.get("confirmed") == "yes"


def ask_confirmation(title: str, message: str, *, action_label: str, danger: bool = True) -> str:
    """A page that says what the action will do and re-posts the same form when confirmed."""
    carried = [
        (k, v) for k, values in request.form.lists() for v in values if k not in ("csrf_token", "confirmed")
    ]
    return render_template(
        "console/confirm.html",
        title=title,
        message=message,
        action_label=action_label,
        danger=danger,
        carried=carried,
        action=request.path,
        back=_safe_next(request.referrer and urlsplit(request.referrer).path) or url_for("console.dashboard"),
    )
