"""Apps in the console (issue 21): the catalog (App Store apps, in-house .ipa and .apk uploads
with their SHA-256 and signer), a unit's required and blocked apps and its block action, and a
device's apps against its units' rules, with why one is not as it should be. Same services and
checks as the API (app.read / app.write; the catalog needs an unscoped principal); audited.

The console takes uploads up to its request limit (web.hostile_input); a larger file goes through
the API (`POST /api/v1/app-catalog/packages`)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from commands.app_enforcement import converge_unit
from mdm.doors.appctx import command_context, db_session, settings
from mdm.ground.models import App, AppKind, AppRuleAction, UnitAppRule
from mdm.services.apps import catalog, rules
from mdm.services.apps.catalog import AppCatalogError
from mdm.services.apps.status import LABELS, app_state_word, device_app_states
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.queries import visible_device, visible_unit, visible_units
from web.rbac import Permission


def _catalog_page(errors: dict[str, list[str]] | None = None) -> str | tuple[str, int]:
    session = db_session()
    apps = catalog.list_apps(session)
    html = render_template(
        "console/app_catalog.html",
        apps=apps,
        packages={a.id: catalog.package_of(session, a) for a in apps},
        public_url=settings().public_url.rstrip("/"),
        file_path=catalog.file_path,
        units=visible_units(session, current_principal()),
        errors=errors or {},
    )
    return (html, 400) if errors else html


def _writer() -> None:
    if current_principal().scoped:
        abort(403)  # the catalog is the organisation's


@bp.route("/app-catalog")
@needs(Permission.APP_READ)
def app_catalog() -> str | tuple[str, int]:
    return _catalog_page()


@bp.route("/app-catalog/store", methods=["POST"])
@needs(Permission.APP_WRITE)
def app_catalog_store() -> Any:
    _writer()
    form = request.form
    data: dict[str, Any] = {
        "identifier": form.get("identifier", "").strip(),
        "name": form.get("name", "").strip(),
        "version": form.get("version", "").strip() or None,
    }
    try:
        data["itunes_store_id"] = int(form.get("itunes_store_id", ""))
    except ValueError:
        return _catalog_page({"itunes_store_id": [_("Enter the App Store ID (digits).")]})
    try:
        catalog.add_store_app(db_session(), data, actor=current_principal().actor)
    except AppCatalogError as exc:
        return _catalog_page({exc.field: [str(exc)]})
    db_session().commit()
    flash(_("App added to the catalog."), "ok")
    return redirect(url_for("console.app_catalog"))


@bp.route("/app-catalog/upload", methods=["POST"])
@needs(Permission.APP_WRITE)
def app_catalog_upload() -> Any:
    _writer()
    upload = request.files.get("file")
    kind = request.form.get("kind", "")
    if upload is None or kind not in (AppKind.ENTERPRISE, AppKind.ANDROID_APK):
        return _catalog_page({"file": [_("Choose the kind and an .ipa or .apk file.")]})
    try:
        catalog.upload_package(
            db_session(), kind, upload.filename or "", upload.read(), actor=current_principal().actor
        )
    except AppCatalogError as exc:
        return _catalog_page({exc.field: [str(exc)]})
    db_session().commit()
    flash(_("App file uploaded."), "ok")
    return redirect(url_for("console.app_catalog"))


@bp.route("/app-catalog/<int:app_id>/rotate", methods=["POST"])
@needs(Permission.APP_WRITE)
def app_catalog_rotate(app_id: int) -> Any:
    _writer()
    app = db_session().get(App, app_id)
    if app is None:
        abort(404)
    try:
        catalog.rotate_download_token(db_session(), app, actor=current_principal().actor)
    except AppCatalogError as exc:
        return _catalog_page({exc.field: [str(exc)]})
    db_session().commit()
    flash(_("Download URL renewed; the old one no longer works."), "ok")
    return redirect(url_for("console.app_catalog"))


def _unit_page(unit_id: int, errors: dict[str, list[str]] | None = None) -> str | tuple[str, int]:
    session = db_session()
    unit = visible_unit(session, current_principal(), unit_id)
    if unit is None:
        abort(404)
    html = render_template(
        "console/app_unit.html",
        unit=unit,
        rules=rules.unit_rules(session, unit),
        own_action=rules.own_block_action(session, unit),
        apps=catalog.list_apps(session),
        errors=errors or {},
    )
    return (html, 400) if errors else html


@bp.route("/app-catalog/units/<int:unit_id>")
@needs(Permission.APP_READ)
def app_unit(unit_id: int) -> str | tuple[str, int]:
    return _unit_page(unit_id)


@bp.route("/app-catalog/units/<int:unit_id>/rules", methods=["POST"])
@needs(Permission.APP_WRITE)
def app_unit_rule(unit_id: int) -> Any:
    session = db_session()
    principal = current_principal()
    unit = visible_unit(session, principal, unit_id)
    if unit is None:
        abort(404)
    form = request.form
    try:
        if form.get("action") == AppRuleAction.REQUIRED:
            app = session.get(App, int(form.get("app_id") or 0))
            if app is None:
                return _unit_page(unit_id, {"app_id": [_("Choose an app of the catalog.")]})
            text = form.get("configuration", "").strip()
            try:
                configuration = json.loads(text) if text else None
            except ValueError:
                return _unit_page(unit_id, {"configuration": [_("The configuration must be a JSON object.")]})
            rules.require_app(session, unit, app, configuration=configuration, actor=principal.actor)
        elif form.get("action") == AppRuleAction.BLOCKED:
            rules.block_app(
                session, unit, form.get("platform", ""), form.get("identifier", ""), actor=principal.actor
            )
        else:
            return _unit_page(unit_id, {"action": [_("Choose required or blocked.")]})
    except AppCatalogError as exc:
        return _unit_page(unit_id, {exc.field: [str(exc)]})
    devices = converge_unit(session, unit.id, context=command_context())
    session.commit()
    flash(_("Saved; %(n)d tablets follow it now.", n=devices), "ok")
    return redirect(url_for("console.app_unit", unit_id=unit.id))


@bp.route("/app-catalog/units/<int:unit_id>/rules/<int:rule_id>/delete", methods=["POST"])
@needs(Permission.APP_WRITE)
def app_unit_rule_delete(unit_id: int, rule_id: int) -> Response:
    session = db_session()
    unit = visible_unit(session, current_principal(), unit_id)
    rule = session.get(UnitAppRule, rule_id)
    if unit is None or rule is None or rule.org_unit_id != unit.id:
        abort(404)
    rules.remove_rule(session, rule, actor=current_principal().actor)
    converge_unit(session, unit.id, context=command_context())
    session.commit()
    flash(_("App rule removed."), "ok")
    return redirect(url_for("console.app_unit", unit_id=unit.id))  # type: ignore[return-value]


@bp.route("/app-catalog/units/<int:unit_id>/block-action", methods=["POST"])
@needs(Permission.APP_WRITE)
def app_unit_block_action(unit_id: int) -> Any:
    session = db_session()
    unit = visible_unit(session, current_principal(), unit_id)
    if unit is None:
        abort(404)
    choice = request.form.get("block_action") or None
    try:
        rules.set_block_action(session, unit, choice, actor=current_principal().actor)
    except AppCatalogError as exc:
        return _unit_page(unit_id, {exc.field: [str(exc)]})
    converge_unit(session, unit.id, context=command_context())
    session.commit()
    flash(_("Blocked-app action saved."), "ok")
    return redirect(url_for("console.app_unit", unit_id=unit.id))


@bp.route("/devices/<int:device_id>/app-state")
@needs(Permission.APP_READ)
def device_app_state(device_id: int) -> str:
    session = db_session()
    device = visible_device(session, current_principal(), device_id)
    if device is None:
        abort(404)
    rows = []
    for state, app in device_app_states(session, device):
        word = app_state_word(state, app)
        rows.append({"state": state, "app": app, "word": word, "label": LABELS[word]})
    return render_template("console/app_device.html", device=device, rows=rows)
