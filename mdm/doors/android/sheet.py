"""The printable Android provisioning sheet: the unit, the device-owner QR code, expiry, steps.

GET /android/provisioning/<token>/sheet    bilingual A4 sheet (like the Apple enrollment sheet)
GET /android/provisioning/<token>/qr.png   the QR code alone

The token secret is in the path and in the code, so answers are no-store and no-referrer. A token
that cannot enroll an Android tablet gets the same friendly page as the Apple enrollment pages.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, render_template
from markupsafe import Markup

from enrollment import android_qr
from enrollment.android_settings import effective_settings
from enrollment.tokens import TokenState, TokenUnavailable, token_state, usable_token
from mdm.doors.appctx import db_session, settings
from mdm.ground import clock
from mdm.ground.models import EnrollmentToken, OrgUnit, TokenPlatform
from mdm.services import orgunits

log = logging.getLogger(__name__)
PATH = "/android/provisioning/<secret>"
DISPLAY_TIMEZONE = timezone(timedelta(hours=9), "JST")
_STATUS = {"unknown": 404, TokenState.EXPIRED: 410, TokenState.USED_UP: 410, TokenState.REVOKED: 410}


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _unavailable(reason: str) -> Response:
    # An Apple token here is as useless as an unknown one: say "not valid", not "for Android".
    shown = "unknown" if reason == "wrong_platform" else reason
    html = render_template("enrollment/unavailable.html", reason=shown)
    status = _STATUS.get(shown, 404)
    return _private(Response(html, status=status, content_type="text/html; charset=utf-8"))


def _not_configured(exc: android_qr.ProvisioningNotConfigured) -> Response:
    log.error("android provisioning refused: %s", exc)
    html = render_template("android/not_configured.html", missing=sorted(exc.settings))
    return _private(Response(html, status=503, content_type="text/html; charset=utf-8"))


def _token(secret: str) -> EnrollmentToken:
    return usable_token(db_session(), secret, platform=TokenPlatform.ANDROID)


def _local(moment: datetime) -> str:
    return moment.astimezone(DISPLAY_TIMEZONE).strftime("%Y-%m-%d %H:%M")


def sheet(secret: str) -> Response:
    session = db_session()
    conf = effective_settings(session, settings())  # what the console stored wins over the environment
    try:
        token = _token(secret)
        qr_svg = Markup(android_qr.qr_svg_inline(conf, secret, scale=4))  # noqa: S704 - segno output
    except TokenUnavailable as exc:
        return _unavailable(exc.state)
    except android_qr.ProvisioningNotConfigured as exc:
        return _not_configured(exc)
    unit = session.get(OrgUnit, token.org_unit_id)
    html = render_template(
        "android/sheet.html",
        token=token,
        unit_path_ja=orgunits.path_label(session, unit) if unit else "",
        unit_path_en=orgunits.path_label(session, unit, english=True) if unit else "",
        qr_svg=qr_svg,
        server_url=settings().public_url,
        expires_local=_local(token.expires_at),
        expires_utc=token.expires_at.strftime("%Y-%m-%d %H:%M"),
        remaining=token.max_uses - token.use_count,
        state=token_state(token, clock.now()),
        organization=settings().organization_name,
        wifi_ssid=conf.android_provisioning_wifi_ssid,
    )
    return _private(Response(html, status=200, content_type="text/html; charset=utf-8"))


def qr_png(secret: str) -> Response:
    try:
        _token(secret)
        png = android_qr.qr_png(effective_settings(db_session(), settings()), secret)
    except TokenUnavailable as exc:
        return _unavailable(exc.state)
    except android_qr.ProvisioningNotConfigured as exc:
        return _not_configured(exc)
    return _private(Response(png, status=200, content_type="image/png"))


def register(bp: Blueprint) -> None:
    bp.add_url_rule(PATH + "/sheet", "provisioning_sheet", sheet, methods=["GET"])
    bp.add_url_rule(PATH + "/qr.png", "provisioning_qr_png", qr_png, methods=["GET"])
