"""The app catalog: App Store apps by iTunesStoreID, in-house iOS apps and Android APKs by upload.

Uploaded files are kept in the database (every node of a two-node setup serves them, and the
encrypted backups carry them) with their SHA-256; an APK also with its signing-certificate digest.
They are served at `/apps/files/<token>/<file>` (and an .ipa's manifest at
`/apps/manifests/<token>.plist`), where the token is 256 random bits:

- Why not authenticated: iOS fetches the manifest and the .ipa itself, outside the MDM channel and
  without its identity certificate, so a device cannot authenticate those downloads.
- What a leaked URL gives: the app's file, which is not secret the way a profile's Wi-Fi password
  is (a device that has the app has the file), but may name internal servers. An administrator
  rotates the token (`rotate_download_token`): the old URL answers 404 at once and the devices
  get the new one with their next install. Nothing else is reachable from a token.
- Tampering: the device checks the manifest's SHA-256 (iOS) and the agent the SHA-256 and the
  signing certificate in its policy (Android) before installing.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import App, AppKind, AppPackage
from mdm.services.apps.apk import ApkError, read_apk
from mdm.services.apps.ipa import IpaError, read_ipa

MAX_PACKAGE_BYTES = 512 * 1024 * 1024
BUNDLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]*(\.[A-Za-z0-9\-_]+)+$")
_PACKAGE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

FILES_PATH = "/apps/files"
MANIFESTS_PATH = "/apps/manifests"


class AppCatalogError(ValueError):
    """A catalog change was refused; `field` names what was wrong."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class StoreAppSchema(Schema):
    itunes_store_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**53))
    identifier = fields.String(
        required=True,
        validate=[validate.Length(max=255), validate.Regexp(BUNDLE_ID, error="must be a bundle identifier")],
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    version = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


def _load(schema: Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(schema.load(dict(data)))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        field = sorted(messages)[0]
        problem = messages[field]
        text = "; ".join(str(m) for m in problem) if isinstance(problem, list) else str(problem)
        raise AppCatalogError(text, field) from exc


def list_apps(session: Session, platform: str | None = None) -> list[App]:
    query = select(App).order_by(App.platform, App.name, App.id)
    if platform is not None:
        query = query.where(App.platform == platform)
    return list(session.scalars(query))


def get_app(session: Session, app_id: int) -> App | None:
    return session.get(App, app_id)


def package_of(session: Session, app: App) -> AppPackage | None:
    return session.scalars(select(AppPackage).where(AppPackage.app_id == app.id)).first()


def _existing(session: Session, platform: str, identifier: str) -> App | None:
    return session.scalars(select(App).where(App.platform == platform, App.identifier == identifier)).first()


def add_store_app(session: Session, data: Mapping[str, Any], *, actor: Actor) -> App:
    """An App Store app by its iTunesStoreID (adamId); a second one with the same bundle id is refused."""
    clean = _load(StoreAppSchema(), data)
    if _existing(session, "apple", clean["identifier"]) is not None:
        raise AppCatalogError("an app with this bundle identifier is already in the catalog", "identifier")
    app = App(
        kind=AppKind.APP_STORE,
        platform="apple",
        identifier=clean["identifier"],
        name=clean["name"],
        itunes_store_id=clean["itunes_store_id"],
        version=clean["version"],
        created_by=actor.name,
    )
    session.add(app)
    session.flush()
    record_event(session, actor, "app.added", "app", app.id, describe(app))
    return app


def set_store_version(session: Session, app: App, version: str, *, actor: Actor) -> App:
    """The store's current version of an App Store app: devices that have it get it as an update."""
    if app.kind != AppKind.APP_STORE:
        raise AppCatalogError(
            "only an App Store app has a store version; upload a new file instead", "version"
        )
    if not version or len(version) > 64:
        raise AppCatalogError("version must be 1 to 64 characters", "version")
    old, app.version, app.updated_at = app.version, version, clock.now()
    record_event(session, actor, "app.version_changed", "app", app.id, {"old": old, "new": version})
    return app


def upload_package(session: Session, kind: str, filename: str, data: bytes, *, actor: Actor) -> App:
    """An .ipa (kind enterprise) or .apk (kind android_apk): read, hashed, stored. The same
    identifier uploaded again is a new version of that app (its devices are updated)."""
    if kind not in (AppKind.ENTERPRISE, AppKind.ANDROID_APK):
        raise AppCatalogError("kind must be enterprise or android_apk", "kind")
    if not data:
        raise AppCatalogError("the file is empty", "file")
    if len(data) > MAX_PACKAGE_BYTES:
        raise AppCatalogError(f"the file is larger than {MAX_PACKAGE_BYTES} bytes", "file")
    signing: tuple[str | None, str | None] = (None, None)
    version_code = None
    try:
        if kind == AppKind.ENTERPRISE:
            ipa = read_ipa(data)
            identifier, name, version, sha256 = ipa.bundle_id, ipa.name, ipa.version or ipa.build, ipa.sha256
            if not BUNDLE_ID.match(identifier) or len(identifier) > 255:
                raise AppCatalogError("Info.plist's CFBundleIdentifier is not a bundle identifier", "file")
            platform, suffix = "apple", ".ipa"
        else:
            apk = read_apk(data)
            identifier, name, version, sha256 = apk.package_name, apk.label, apk.version_name, apk.sha256
            if not _PACKAGE.match(identifier) or len(identifier) > 255:
                raise AppCatalogError("the manifest's package is not a package name", "file")
            version_code, signing = apk.version_code, (apk.signing_cert_sha256, apk.signing_scheme)
            platform, suffix = "android", ".apk"
    except (ApkError, IpaError) as exc:
        raise AppCatalogError(str(exc), "file") from exc
    app = _existing(session, platform, identifier)
    now = clock.now()
    if app is None:
        app = App(
            kind=kind,
            platform=platform,
            identifier=identifier,
            name=name or identifier,
            created_by=actor.name,
        )
        session.add(app)
    elif app.kind != kind:
        raise AppCatalogError(f"{identifier} is already in the catalog as another kind of app", "file")
    else:
        previous = package_of(session, app)
        if previous is not None and previous.signing_cert_sha256 not in (None, signing[0]):
            # Android refuses an update signed by another key; so does Hikeshi, before any device.
            raise AppCatalogError(
                "this APK is signed with another certificate than the version in the catalog", "file"
            )
    app.version, app.version_code, app.updated_at = version, version_code, now
    session.flush()
    package = package_of(session, app)
    if package is None:
        package = AppPackage(app_id=app.id, download_token=secrets.token_urlsafe(32))
        session.add(package)
    package.filename = _safe_filename(filename, identifier, suffix)
    package.size = len(data)
    package.sha256 = sha256
    package.signing_cert_sha256, package.signing_scheme = signing
    package.content = data
    package.uploaded_at = now
    session.flush()
    record_event(
        session,
        actor,
        "app.uploaded",
        "app",
        app.id,
        {**describe(app), "sha256": sha256, "size": len(data), "signing_cert_sha256": signing[0]},
    )
    return app


def rotate_download_token(session: Session, app: App, *, actor: Actor) -> AppPackage:
    """A new download URL for the app's file; the old one stops working at once."""
    package = package_of(session, app)
    if package is None:
        raise AppCatalogError("this app has no file served by Hikeshi", "app")
    package.download_token = secrets.token_urlsafe(32)
    record_event(session, actor, "app.download_url_rotated", "app", app.id, {"identifier": app.identifier})
    return package


def remove_app(session: Session, app: App, *, actor: Actor) -> None:
    """Out of the catalog (its file, and the unit rules that require it, with it)."""
    record_event(session, actor, "app.removed", "app", app.id, describe(app))
    session.delete(app)
    session.flush()


def package_for_token(session: Session, token: str) -> AppPackage | None:
    if not token or len(token) > 64:
        return None
    return session.scalars(select(AppPackage).where(AppPackage.download_token == token)).first()


def file_path(package: AppPackage) -> str:
    return f"{FILES_PATH}/{package.download_token}/{package.filename}"


def manifest_path(package: AppPackage) -> str:
    return f"{MANIFESTS_PATH}/{package.download_token}.plist"


def _safe_filename(filename: str, identifier: str, suffix: str) -> str:
    base = _FILENAME_UNSAFE.sub("_", (filename or "").rsplit("/", 1)[-1]).strip("._")[:200]
    if not base.lower().endswith(suffix):
        base = f"{base or identifier}{suffix}"
    return base


def describe(app: App) -> dict[str, Any]:
    """What identifies an app in the catalog: its audit events' details and the API's view."""
    return {
        "kind": app.kind,
        "platform": app.platform,
        "identifier": app.identifier,
        "name": app.name,
        "itunes_store_id": app.itunes_store_id,
        "version": app.version,
        "version_code": app.version_code,
    }
