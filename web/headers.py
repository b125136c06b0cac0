"""Security headers on every response: no framing, no sniffing, no inline script."""

from __future__ import annotations

from flask import Flask, Response, request

from web.auth.sessions import secure_cookies

# No 'unsafe-inline' anywhere: every script and stylesheet is a static file of our own.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


# Pages outside the console and the API (the printable enrollment sheet) keep their styles in a
# <style> element; they still may not run any script that is not a file of ours.
OTHER_PAGES_POLICY = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def _strict(path: str) -> bool:
    return path == "/" or path.startswith(("/console", "/api/"))


def _apply(response: Response) -> Response:
    from mdm.doors.appctx import settings

    headers = response.headers
    # A handler that needs a different policy (a printable sheet, say) sets its own.
    policy = CONTENT_SECURITY_POLICY if _strict(request.path) else OTHER_PAGES_POLICY
    headers.setdefault("Content-Security-Policy", policy)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts.
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
    if secure_cookies(settings()):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith(("/console", "/api/")) and not request.path.startswith("/console/static/"):
        # Pages and API answers show device and user data: never keep them in a cache.
        headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    app.after_request(_apply)
