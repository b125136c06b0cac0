"""The web layer: admin console and REST API, users, sessions, MFA and RBAC.

Nothing outside web/ imports it (DESIGN.md "Layers"); the application factory calls `init_web`.
"""

from __future__ import annotations

from flask import Flask


def init_web(app: Flask) -> None:
    """Attach translations, security headers, error pages, the API and the console to `app`."""
    from mdm.doors.appctx import Hikeshi
    from web import api, console, errors, headers, hostile_input, i18n
    from web.auth.sessions import secure_cookies
    from web.console import labels

    hikeshi: Hikeshi = app.extensions["hikeshi"]
    conf = hikeshi.settings
    # Flask's own cookie carries only flashed messages; sessions live on the server.
    app.config.update(
        SESSION_COOKIE_NAME="hikeshi_flash",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies(conf),
        SESSION_COOKIE_PATH="/console",
    )
    hostile_input.install_converters(app)
    i18n.init_app(app, conf.instance_path)
    headers.init_app(app)
    errors.init_app(app)
    api.init_app(app)
    hostile_input.init_app(app)
    console.init_app(app)
    app.jinja_env.globals.update(
        status_label=labels.status_label,
        failure_label=labels.failure_label,
        enrollment_label=labels.enrollment_label,
        role_label=labels.role_label,
        token_state_label=labels.token_state_label,
        command_label=labels.command_label,
    )
