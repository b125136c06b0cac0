"""The admin console: server-rendered pages, a hand-written stylesheet and one small script.

`init_app` is the console's wiring: importing the view modules attaches their routes to the
blueprint (web.console.blueprint), then the blueprint is registered. Nothing happens on import."""

from __future__ import annotations

from flask import Flask, Response, redirect, url_for


def _site_root() -> Response:
    return redirect(url_for("console.dashboard"))  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    from web.console import (  # noqa: F401  (each view module attaches its routes to the blueprint)
        activation_lock,
        ade,
        alert_text,
        alerts,
        amapi,
        app_catalog,
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
        mail_settings,
        messages,
        orgunits,
        os_updates,
        profile_text,
        profiles,
        push_cert_request,
        settings_views,
        users,
        vpp,
        webhooks,
    )
    from web.console.blueprint import bp

    app.register_blueprint(bp)
    app.add_url_rule("/", "site_root", _site_root)
