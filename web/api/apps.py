"""Apps (issue 21): the catalog (App Store apps, in-house .ipa and Android .apk uploads with their
hashes), each org unit's required and blocked apps and block action, and per device what it has
against what it should have, and why not.

The catalog is the organisation's: changing it needs an unscoped principal with app.write. Rules
are per unit and follow the unit scope, like profile assignments. Every change is audited by the
service that makes it; a rule change is applied to the unit's devices at once.
"""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, fields, validate

from commands.app_enforcement import converge_unit
from mdm.doors.appctx import command_context, db_session, settings
from mdm.ground.models import App, AppKind, AppRuleAction, BlockAction, OrgUnit, UnitAppRule
from mdm.services.apps import catalog, rules
from mdm.services.apps.catalog import BUNDLE_ID, MAX_PACKAGE_BYTES, AppCatalogError
from mdm.services.apps.status import app_state_word, device_app_states
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.api.schemas import Id
from web.errors import ApiError, field_error
from web.queries import visible_device, visible_unit
from web.rbac import Permission

__all__ = ["MAX_PACKAGE_BYTES", "UPLOAD_PATH", "blp"]

blp = ApiBlueprint(
    "apps", __name__, url_prefix="/api/v1", description="Apps: catalog, unit rules, device state"
)
UPLOAD_PATH = "/api/v1/app-catalog/packages"


class AppSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    platform = fields.String()
    identifier = fields.String()
    name = fields.String()
    itunes_store_id = fields.Integer(allow_none=True)
    version = fields.String(allow_none=True)
    version_code = fields.Integer(allow_none=True)
    sha256 = fields.String(allow_none=True)
    size = fields.Integer(allow_none=True)
    signing_cert_sha256 = fields.String(allow_none=True)
    signing_scheme = fields.String(allow_none=True)
    download_url = fields.String(allow_none=True)


class StoreAppInSchema(Schema):
    itunes_store_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**53))
    identifier = fields.String(
        required=True,
        validate=[
            validate.Length(min=3, max=255),
            validate.Regexp(BUNDLE_ID, error="must be a bundle identifier"),
        ],
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    version = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


class UploadQuerySchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf([AppKind.ENTERPRISE, AppKind.ANDROID_APK]))
    filename = fields.String(load_default="", validate=validate.Length(max=255))


class StoreVersionSchema(Schema):
    version = fields.String(required=True, validate=validate.Length(min=1, max=64))


class RuleInSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(AppRuleAction.ALL))
    app_id = Id(load_default=None, allow_none=True)
    platform = fields.String(load_default=None, validate=validate.OneOf(["apple", "android"]))
    identifier = fields.String(load_default=None, validate=validate.Length(min=1, max=255))
    configuration = fields.Dict(load_default=None, allow_none=True)


class RuleSchema(Schema):
    id = fields.Integer()
    org_unit_id = fields.Integer()
    action = fields.String()
    platform = fields.String()
    identifier = fields.String()
    app_id = fields.Integer(allow_none=True)
    configuration = fields.Dict(allow_none=True)


class UnitAppsSchema(Schema):
    org_unit_id = fields.Integer()
    block_action = fields.String(allow_none=True)
    effective_block_action = fields.String()
    rules = fields.List(fields.Nested(RuleSchema))


class BlockActionSchema(Schema):
    block_action = fields.String(required=True, allow_none=True, validate=validate.OneOf([*BlockAction.ALL]))


class DeviceAppSchema(Schema):
    identifier = fields.String()
    app_id = fields.Integer(allow_none=True)
    desired = fields.String(allow_none=True)
    state = fields.String()
    managed_status = fields.String(allow_none=True)
    installed = fields.Boolean(allow_none=True)
    installed_version = fields.String(allow_none=True)
    catalog_version = fields.String(allow_none=True)
    license_state = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    pending_action = fields.String(allow_none=True)
    attempts = fields.Integer()
    reported_at = fields.DateTime(allow_none=True)


def _catalog_error(exc: AppCatalogError) -> ApiError:
    return field_error(exc.field, str(exc))


def _unscoped() -> None:
    if current_principal().scope_unit_ids is not None:
        raise ApiError(403, "the app catalog is the organisation's: changing it needs an unscoped principal")


def _app_or_404(app_id: int) -> App:
    app = catalog.get_app(db_session(), app_id)
    if app is None:
        raise ApiError(404, f"no app with id {app_id}")
    return app


def app_view(app: App) -> dict[str, Any]:
    package = catalog.package_of(db_session(), app)
    view: dict[str, Any] = {
        "id": app.id,
        **catalog.describe(app),
        "sha256": None,
        "size": None,
        "signing_cert_sha256": None,
        "signing_scheme": None,
        "download_url": None,
    }
    if package is not None:
        view.update(
            sha256=package.sha256,
            size=package.size,
            signing_cert_sha256=package.signing_cert_sha256,
            signing_scheme=package.signing_scheme,
            download_url=settings().public_url.rstrip("/") + catalog.file_path(package),
        )
    return view


@blp.route("/app-catalog", methods=["GET"])
@blp.response(200, AppSchema(many=True))
@permission(Permission.APP_READ)
def list_apps() -> Any:
    """The catalog, with each uploaded file's SHA-256 (and an APK's signing-certificate digest)."""
    return [app_view(a) for a in catalog.list_apps(db_session())]


@blp.route("/app-catalog/store", methods=["POST"])
@blp.arguments(StoreAppInSchema)
@blp.response(201, AppSchema)
@permission(Permission.APP_WRITE)
def add_store_app(body: dict[str, Any]) -> Any:
    """An App Store app by its iTunesStoreID (adamId); installed with a device-based license."""
    _unscoped()
    session = db_session()
    try:
        app = catalog.add_store_app(session, body, actor=current_principal().actor)
    except AppCatalogError as exc:
        raise _catalog_error(exc) from exc
    session.commit()
    return app_view(app)


@blp.route("/app-catalog/packages", methods=["POST"])
@blp.arguments(UploadQuerySchema, location="query")
@blp.response(201, AppSchema)
@permission(Permission.APP_WRITE)
def upload_package(query: dict[str, Any]) -> Any:
    """Upload an in-house .ipa (kind=enterprise) or an .apk (kind=android_apk) as the raw request
    body. The same identifier again is a new version (an APK must keep its signing certificate)."""
    _unscoped()
    session = db_session()
    try:
        app = catalog.upload_package(
            session,
            query["kind"],
            query["filename"],
            request.get_data(cache=False),
            actor=current_principal().actor,
        )
    except AppCatalogError as exc:
        raise _catalog_error(exc) from exc
    session.commit()
    return app_view(app)


@blp.route(f"/app-catalog/<{ID}:app_id>/version", methods=["PUT"])
@blp.arguments(StoreVersionSchema)
@blp.response(200, AppSchema)
@permission(Permission.APP_WRITE)
def set_store_version(body: dict[str, Any], app_id: int) -> Any:
    """The App Store's current version: pushed as an update to devices that have the app."""
    _unscoped()
    session = db_session()
    app = _app_or_404(app_id)
    try:
        catalog.set_store_version(session, app, body["version"], actor=current_principal().actor)
    except AppCatalogError as exc:
        raise _catalog_error(exc) from exc
    session.commit()
    return app_view(app)


@blp.route(f"/app-catalog/<{ID}:app_id>/download-url", methods=["POST"])
@blp.response(200, AppSchema)
@permission(Permission.APP_WRITE)
def rotate_download_url(app_id: int) -> Any:
    """A new download URL for the app's file (a leaked one stops working at once)."""
    _unscoped()
    session = db_session()
    app = _app_or_404(app_id)
    try:
        catalog.rotate_download_token(session, app, actor=current_principal().actor)
    except AppCatalogError as exc:
        raise _catalog_error(exc) from exc
    session.commit()
    return app_view(app)


@blp.route(f"/app-catalog/<{ID}:app_id>", methods=["DELETE"])
@blp.response(204)
@permission(Permission.APP_WRITE)
def remove_app(app_id: int) -> Any:
    """Out of the catalog, with its file and the unit rules requiring it."""
    _unscoped()
    session = db_session()
    catalog.remove_app(session, _app_or_404(app_id), actor=current_principal().actor)
    session.commit()
    return None


# -- per unit -------------------------------------------------------------------------------------


def _unit_or_404(unit_id: int) -> OrgUnit:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        raise ApiError(404, f"no org unit with id {unit_id}")
    return unit


def _rule_view(rule: UnitAppRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "org_unit_id": rule.org_unit_id,
        "action": rule.action,
        "platform": rule.platform,
        "identifier": rule.identifier,
        "app_id": rule.app_id,
        "configuration": rule.configuration,
    }


def _unit_view(unit: OrgUnit) -> dict[str, Any]:
    session = db_session()
    own = rules.own_block_action(session, unit)
    effective = own
    if effective is None:
        for unit_id in rules.unit_chain(session, unit.parent_id):
            effective = rules.own_block_action(session, session.get(OrgUnit, unit_id))  # type: ignore[arg-type]
            if effective is not None:
                break
    return {
        "org_unit_id": unit.id,
        "block_action": own,
        "effective_block_action": effective or BlockAction.DEFAULT,
        "rules": [_rule_view(r) for r in rules.unit_rules(session, unit)],
    }


@blp.route(f"/org-units/<{ID}:unit_id>/apps", methods=["GET"])
@blp.response(200, UnitAppsSchema)
@permission(Permission.APP_READ)
def unit_apps(unit_id: int) -> Any:
    """The unit's own required and blocked apps and its block action (own, and what applies)."""
    return _unit_view(_unit_or_404(unit_id))


@blp.route(f"/org-units/<{ID}:unit_id>/apps", methods=["POST"])
@blp.arguments(RuleInSchema)
@blp.response(201, RuleSchema)
@permission(Permission.APP_WRITE)
def add_unit_rule(body: dict[str, Any], unit_id: int) -> Any:
    """Require a catalog app (`app_id`, optional `configuration`) or block an app (`app_id`, or
    `platform` and `identifier`) on the unit and below; its devices follow at once."""
    session = db_session()
    unit = _unit_or_404(unit_id)
    actor = current_principal().actor
    try:
        if body["action"] == AppRuleAction.REQUIRED:
            if body["app_id"] is None:
                raise field_error("app_id", "a required app must be in the catalog")
            rule = rules.require_app(
                session, unit, _app_or_404(body["app_id"]), configuration=body["configuration"], actor=actor
            )
        else:
            if body["app_id"] is not None:
                app = _app_or_404(body["app_id"])
                platform, identifier = app.platform, app.identifier
            elif body["platform"] and body["identifier"]:
                platform, identifier = body["platform"], body["identifier"]
            else:
                raise field_error("identifier", "give app_id, or platform and identifier")
            rule = rules.block_app(session, unit, platform, identifier, actor=actor)
    except AppCatalogError as exc:
        raise _catalog_error(exc) from exc
    converge_unit(session, unit.id, context=command_context())
    session.commit()
    return _rule_view(rule)


@blp.route(f"/org-units/<{ID}:unit_id>/apps/<{ID}:rule_id>", methods=["DELETE"])
@blp.response(204)
@permission(Permission.APP_WRITE)
def remove_unit_rule(unit_id: int, rule_id: int) -> Any:
    """Drop one of the unit's rules; an app Hikeshi installed that no unit requires is removed."""
    session = db_session()
    unit = _unit_or_404(unit_id)
    rule = session.get(UnitAppRule, rule_id)
    if rule is None or rule.org_unit_id != unit.id:
        raise ApiError(404, f"no app rule {rule_id} on org unit {unit_id}")
    rules.remove_rule(session, rule, actor=current_principal().actor)
    converge_unit(session, unit.id, context=command_context())
    session.commit()
    return None


@blp.route(f"/org-units/<{ID}:unit_id>/app-block-action", methods=["PUT"])
@blp.arguments(BlockActionSchema)
@blp.response(200, UnitAppsSchema)
@permission(Permission.APP_WRITE)
def set_block_action(body: dict[str, Any], unit_id: int) -> Any:
    """`report` (detect and notify), `remove` (detect, notify and remove) or null (inherit)."""
    session = db_session()
    unit = _unit_or_404(unit_id)
    try:
        rules.set_block_action(session, unit, body["block_action"], actor=current_principal().actor)
    except AppCatalogError as exc:
        raise _catalog_error(exc) from exc
    converge_unit(session, unit.id, context=command_context())
    session.commit()
    return _unit_view(unit)


# -- per device -----------------------------------------------------------------------------------


@blp.route(f"/devices/<{ID}:device_id>/app-state", methods=["GET"])
@blp.response(200, DeviceAppSchema(many=True))
@permission(Permission.APP_READ)
def device_apps(device_id: int) -> Any:
    """Per app the device should have (or must not): its state and, when it is not as it should
    be, why (e.g. "license not available", the device's own error)."""
    session = db_session()
    device = visible_device(session, current_principal(), device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}")
    out = []
    for state, app in device_app_states(session, device):
        out.append(
            {
                "identifier": state.identifier,
                "app_id": state.app_id,
                "desired": state.desired,
                "state": app_state_word(state, app),
                "managed_status": state.managed_status,
                "installed": state.installed,
                "installed_version": state.installed_version,
                "catalog_version": app.version if app else None,
                "license_state": state.license_state,
                "reason": state.reason,
                "pending_action": state.pending_action,
                "attempts": state.attempts,
                "reported_at": state.reported_at,
            }
        )
    return out
