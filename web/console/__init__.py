"""The admin console: server-rendered pages, a hand-written stylesheet and one small script."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, g, redirect, url_for
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from markupsafe import Markup

from mdm import clock
from mdm.appctx import settings
from web import csrf
from web.auth.sessions import secure_cookies
from web.console.guard import load_console_user
from web.rbac import Permission

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


def _csrf_field() -> Markup:
    token = csrf.csrf_token(settings().secret_key)
    return Markup('<input type="hidden" name="{}" value="{}">').format(csrf.FIELD, token)


def _dt(value: datetime | None, fmt: str = "yyyy-MM-dd HH:mm:ss") -> str:
    if value is None:
        return "—"
    return format_datetime(value, fmt)


def _ago(value: datetime | None) -> str:
    if value is None:
        return _("never")
    seconds = int((clock.now() - value).total_seconds())
    if seconds < 60:
        return _("just now")
    if seconds < 3600:
        return _("%(n)d min ago", n=seconds // 60)
    if seconds < 86400:
        return _("%(n)d h ago", n=seconds // 3600)
    return _("%(n)d days ago", n=seconds // 86400)


def _can(permission: str) -> bool:
    principal = g.get("principal")
    return principal is not None and principal.can(Permission(permission))


def _context() -> dict[str, Any]:
    return {
        "csrf_field": _csrf_field,
        "can": _can,
        "current_user": g.get("user"),
        "principal": g.get("principal"),
        "locale": str(get_locale() or "ja"),
        "login_step": g.get("login_step"),
    }


def _after(response: Response) -> Response:
    return csrf.set_pre_session_cookie(response, secure_cookies(settings()))


@bp.route("/")
def root() -> Response:
    return redirect(url_for("console.dashboard"))  # type: ignore[return-value]


bp.before_request(load_console_user)
bp.after_request(_after)
bp.app_context_processor(_context)
bp.add_app_template_filter(_dt, "dt")
bp.add_app_template_filter(_ago, "ago")


def _site_root() -> Response:
    return redirect(url_for("console.dashboard"))  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_url_rule("/", "site_root", _site_root)


# The view modules register their routes on bp when imported.
from web.console import (  # noqa: E402, F401
    alerts,
    apps,
    audit,
    auth_views,
    banners,
    bulk_labels,
    continuity,
    dashboard,
    devices,
    enrollment,
    hotline,
    orgunits,
    profiles,
    settings_views,
    users,
    webhooks,
)
