"""Enrollment pages a new tablet (or the administrator printing its sheet) opens.

GET /enroll/<token>           the signed enrollment profile (.mobileconfig)
GET /enroll/<token>/qr.svg    the QR code of that URL (also .png)
GET /enroll/<token>/sheet     a printable bilingual sheet: unit, QR code, expiry, three steps

The token in the path is the secret itself, so every answer is no-store and no-referrer. A token
that cannot be used gets a plain bilingual page (404 unknown, 410 expired, used up or revoked),
never a traceback.

These are Apple's pages. An android token enrolls by the device-owner provisioning QR code
(mdm.doors.android.sheet): the profile and the QR codes here refuse it (409, "this code is for
Android"), since a QR of this URL would only confuse whoever scans it; its sheet address
redirects to the Android sheet, so an administrator with an old link still prints the right code.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, redirect, render_template, request, url_for
from markupsafe import Markup

from enrollment import qr
from enrollment.profile import CONTENT_TYPE, NoPushTopic, build_enrollment_profile
from enrollment.tokens import TokenState, TokenUnavailable, enrollment_url, token_state, usable_token
from mdm.doors.appctx import client_ip, db_session, settings
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.ca import CANotReady
from mdm.ground.models import EnrollmentToken, OrgUnit, TokenPlatform
from mdm.services import orgunits

log = logging.getLogger(__name__)
# The sheets' one script (the print button) is a static file: their CSP runs no inline script.
bp = Blueprint(
    "enrollment",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/enroll/static",
)

# Japan has no daylight saving time: a fixed offset needs no tz database in the container.
DISPLAY_TIMEZONE = timezone(timedelta(hours=9), "JST")
PROFILE_FILENAME = "hikeshi-enrollment.mobileconfig"

_UNAVAILABLE_STATUS = {
    "unknown": 404,
    TokenState.EXPIRED: 410,
    TokenState.USED_UP: 410,
    TokenState.REVOKED: 410,
    "wrong_platform": 409,
    "no_push_topic": 503,
    "no_ca": 503,
}


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _unavailable(reason: str) -> Response:
    html = render_template("enrollment/unavailable.html", reason=reason)
    return _private(
        Response(html, status=_UNAVAILABLE_STATUS.get(reason, 410), content_type="text/html; charset=utf-8")
    )


def _token(secret: str) -> EnrollmentToken:
    return usable_token(db_session(), secret)


def _apple_token(secret: str) -> EnrollmentToken:
    """A usable token for an Apple device; TokenUnavailable("wrong_platform") for an android one."""
    token = _token(secret)
    if token.platform != TokenPlatform.APPLE:
        raise TokenUnavailable("wrong_platform", token)
    return token


@bp.get("/enroll/<secret>")
def profile(secret: str) -> Response:
    session = db_session()
    try:
        token = _apple_token(secret)
        if request.method == "HEAD":
            # Link checkers and previews probe with HEAD: answer without issuing a challenge.
            return _private(Response(b"", status=200, content_type=CONTENT_TYPE))
        actor = Actor(f"enrollment-token:{token.id}", "device", client_ip())
        rendered = build_enrollment_profile(session, settings(), token, actor=actor)
        session.commit()
    except TokenUnavailable as exc:
        return _unavailable(exc.state)
    except NoPushTopic as exc:
        log.error("enrollment refused: %s", exc)
        return _unavailable("no_push_topic")
    except CANotReady as exc:
        log.error("enrollment refused: %s", exc)
        return _unavailable("no_ca")
    response = Response(rendered.signed, status=200, content_type=CONTENT_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="{PROFILE_FILENAME}"'
    return _private(response)


@bp.get("/enroll/<secret>/qr.svg")
def qr_svg(secret: str) -> Response:
    try:
        _apple_token(secret)
    except TokenUnavailable as exc:
        return _unavailable(exc.state)
    return _private(Response(qr.qr_svg(enrollment_url(settings(), secret)), content_type="image/svg+xml"))


@bp.get("/enroll/<secret>/qr.png")
def qr_png(secret: str) -> Response:
    try:
        _apple_token(secret)
    except TokenUnavailable as exc:
        return _unavailable(exc.state)
    return _private(Response(qr.qr_png(enrollment_url(settings(), secret)), content_type="image/png"))


def _local(moment: datetime) -> str:
    return moment.astimezone(DISPLAY_TIMEZONE).strftime("%Y-%m-%d %H:%M")


@bp.get("/enroll/<secret>/sheet")
def sheet(secret: str) -> Response:
    session = db_session()
    try:
        token = _token(secret)
    except TokenUnavailable as exc:
        return _unavailable(exc.state)
    if token.platform != TokenPlatform.APPLE:
        # Same origin, secret already in the path; the Android sheet prints the provisioning QR.
        target = url_for("android_agent.provisioning_sheet", secret=secret)
        return _private(redirect(target, code=303))  # type: ignore[arg-type]
    unit = session.get(OrgUnit, token.org_unit_id)
    url = enrollment_url(settings(), secret)
    html = render_template(
        "enrollment/sheet.html",
        token=token,
        unit=unit,
        unit_path_ja=orgunits.path_label(session, unit) if unit else "",
        unit_path_en=orgunits.path_label(session, unit, english=True) if unit else "",
        url=url,
        qr_svg=Markup(qr.qr_svg_inline(url, scale=6)),  # noqa: S704 - segno output, no user markup
        expires_local=_local(token.expires_at),
        expires_utc=token.expires_at.strftime("%Y-%m-%d %H:%M"),
        remaining=token.max_uses - token.use_count,
        state=token_state(token, clock.now()),
        organization=settings().organization_name,
        apple=token.platform == TokenPlatform.APPLE,
    )
    return _private(Response(html, status=200, content_type="text/html; charset=utf-8"))
