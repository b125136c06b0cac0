"""App files for devices: an in-house app's manifest and .ipa, an APK for the Android agent.

Reached only through the unguessable token of the app's file (mdm.services.apps.catalog says why
these downloads are not authenticated and what a leaked URL gives); an unknown token, a file name
that is not the file's, or a rotated token all answer the same 404."""

from __future__ import annotations

from flask import Blueprint, Response, abort

from mdm.doors.appctx import db_session, settings
from mdm.ground.models import App, AppPackage
from mdm.services.apps import catalog
from mdm.services.apps.ipa import manifest_plist

bp = Blueprint("apps_files", __name__)

_TYPES = {".ipa": "application/octet-stream", ".apk": "application/vnd.android.package-archive"}


def _package(token: str) -> tuple[AppPackage, App]:
    package = catalog.package_for_token(db_session(), token)
    app = db_session().get(App, package.app_id) if package is not None else None
    if package is None or app is None:
        abort(404)
    return package, app


def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get(f"{catalog.FILES_PATH}/<token>/<filename>")
def package_file(token: str, filename: str) -> Response:
    package, _app = _package(token)
    if filename != package.filename:
        abort(404)
    suffix = filename[filename.rfind(".") :].lower()
    response = Response(package.content, mimetype=_TYPES.get(suffix, "application/octet-stream"))
    response.headers["Content-Disposition"] = f'attachment; filename="{package.filename}"'
    response.headers["ETag"] = f'"{package.sha256}"'
    response.headers["X-Hikeshi-SHA256"] = package.sha256
    return _headers(response)


@bp.get(f"{catalog.MANIFESTS_PATH}/<token>.plist")
def manifest(token: str) -> Response:
    package, app = _package(token)
    if app.platform != "apple":
        abort(404)
    body = manifest_plist(
        ipa_url=settings().public_url.rstrip("/") + catalog.file_path(package),
        sha256=package.sha256,
        size=package.size,
        bundle_id=app.identifier,
        version=app.version,
        title=app.name,
    )
    return _headers(Response(body, mimetype="text/xml"))
