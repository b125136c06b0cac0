"""Android Management API in the console: the settings page (service account upload, signup with
Google, the enterprise, its notification topic) and, on a unit's page, its Android mode and its
AMAPI enrollment tokens with the printable sheet (the same bilingual A4 layout as the Apple and
agent sheets). Reading needs settings.read / enrollment.read; changing needs settings.write,
orgunit.write or enrollment.write. The key is never shown back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from mdm.doors.appctx import db_session, settings
from mdm.ground.amapi_client import AmapiClient, AmapiError
from mdm.ground.models import AmapiEnrollmentToken, AndroidMode, OrgUnit
from mdm.services import orgunits
from mdm.services.amapi import enterprise as binding
from mdm.services.amapi import tokens
from mdm.services.amapi.client_factory import amapi_client_for
from mdm.services.amapi.credential import MAX_KEY_FILE_BYTES, CredentialError, store_credential
from mdm.services.amapi.enterprise import EnterpriseError
from mdm.services.amapi.mode import ModeError, android_mode, set_android_mode
from mdm.services.amapi.policies import unit_policy_row
from web.api.amapi import callback_url, sync_policy_after_mode_change
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.qr import qr_svg
from web.queries import visible_unit
from web.rbac import Permission

JST = timezone(timedelta(hours=9), "JST")


def _page(errors: dict[str, list[str]] | None = None, enterprise_token: str | None = None) -> Any:
    html = render_template(
        "console/amapi.html",
        status=binding.status(db_session()),
        errors=errors or {},
        enterprise_token=enterprise_token,
        callback_url=callback_url(),
    )
    return (html, 400) if errors else html


def _back() -> Response:
    return redirect(url_for("console.amapi_page"))  # type: ignore[return-value]


def _binding_step(error_field: str, step: Callable[[Session, AmapiClient], Any]) -> tuple[Any, Any]:
    """One step of the enterprise binding with Google's client: (its result, None) once committed,
    or (None, the settings page naming the field) where the key is missing or the step refused.
    The enterprise is the whole fleet's: a principal scoped to a subtree does not bind it."""
    if current_principal().scoped:
        abort(403)
    session = db_session()
    client = amapi_client_for(session, settings())
    if client is None:
        return None, _page({"service_account": [_("Upload the service account key first.")]})
    try:
        with client:
            result = step(session, client)
    except (EnterpriseError, AmapiError) as exc:
        session.rollback()
        return None, _page({error_field: [str(exc)]})
    session.commit()
    return result, None


@bp.route("/settings/amapi")
@needs(Permission.SETTINGS_READ)
def amapi_page() -> Any:
    return _page()


@bp.route("/settings/amapi/credential", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def amapi_credential_upload() -> Any:
    if current_principal().scoped:
        abort(403)
    upload = request.files.get("service_account")
    data = upload.read(MAX_KEY_FILE_BYTES + 1) if upload else b""
    session = db_session()
    try:
        store_credential(session, settings(), data, actor=current_principal().actor)
    except CredentialError as exc:
        session.rollback()
        return _page(
            {"service_account": [_("The file is not a usable service account key: %(why)s", why=str(exc))]}
        )
    session.commit()
    flash(_("Stored the service account key (sealed; it is not shown again)."), "ok")
    return _back()


@bp.route("/settings/amapi/signup", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def amapi_signup() -> Any:
    url, refused = _binding_step(
        "signup",
        lambda session, client: binding.start_signup(
            session, client, callback_url=callback_url(), actor=current_principal().actor
        ),
    )
    if refused is not None:
        return refused
    # Google's signup page; it sends the browser back to the callback below.
    return redirect(url)


@bp.route("/settings/amapi/callback")
@needs(Permission.SETTINGS_WRITE)
def amapi_callback() -> Any:
    """Where Google sends the administrator back: a GET changes nothing, the page asks to confirm."""
    token = request.args.get("enterpriseToken", "")[:512]
    return _page(enterprise_token=token or None)


@bp.route("/settings/amapi/complete", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def amapi_complete() -> Any:
    _bound, refused = _binding_step(
        "enterprise_token",
        lambda session, client: binding.complete_signup(
            session,
            client,
            enterprise_token=request.form.get("enterprise_token", ""),
            display_name=request.form.get("display_name", "").strip() or None,
            actor=current_principal().actor,
        ),
    )
    if refused is not None:
        return refused
    flash(_("The enterprise is bound."), "ok")
    return _back()


@bp.route("/settings/amapi/notifications", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def amapi_notifications() -> Any:
    _saved, refused = _binding_step(
        "pubsub_topic",
        lambda session, client: binding.set_notifications(
            session,
            client,
            topic=request.form.get("pubsub_topic", "").strip(),
            subscription=request.form.get("pubsub_subscription", "").strip(),
            actor=current_principal().actor,
        ),
    )
    if refused is not None:
        return refused
    flash(_("Saved."), "ok")
    return _back()


# -- a unit's page ----------------------------------------------------------------------------------


def unit_amapi_view(unit: OrgUnit) -> dict[str, Any]:
    session = db_session()
    policy = unit_policy_row(session, unit.id)
    return {
        "own": unit.android_mode,
        "effective": android_mode(session, unit.id),
        "labels": AndroidMode.LABELS,
        "bound": binding.bound_enterprise(session) is not None,
        "tokens": tokens.unit_tokens(session, unit.id, include_revoked=True)[:20],
        "state": tokens.token_state,
        "policy": policy,
    }


bp.add_app_template_global(unit_amapi_view, "unit_amapi")


def _unit(unit_id: int) -> OrgUnit:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        abort(404)
    return unit


def _to_unit(unit: OrgUnit) -> Response:
    return redirect(url_for("console.org_unit", unit_id=unit.id) + "#android-mode")  # type: ignore[return-value]


@bp.route("/org-units/<int:unit_id>/android-mode", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def org_unit_android_mode(unit_id: int) -> Response:
    unit = _unit(unit_id)
    session = db_session()
    mode = request.form.get("android_mode") or None
    try:
        set_android_mode(session, unit, mode, actor=current_principal().actor)
    except ModeError:
        abort(400)
    session.commit()
    policy_error = sync_policy_after_mode_change(session, unit.id)
    if policy_error is not None:
        flash(_("The unit's AMAPI policy could not be updated: %(why)s", why=policy_error), "error")
    flash(_("Saved."), "ok")
    return _to_unit(unit)


@bp.route("/org-units/<int:unit_id>/amapi-tokens", methods=["POST"])
@needs(Permission.ENROLLMENT_WRITE)
def org_unit_amapi_token(unit_id: int) -> Response:
    unit = _unit(unit_id)
    session = db_session()
    client = amapi_client_for(session, settings())
    if client is None:
        flash(_("Upload the service account key first."), "error")
        return _to_unit(unit)
    try:
        days = int(request.form.get("days") or tokens.DEFAULT_DAYS)
    except ValueError:
        days = 0
    try:
        with client:
            row = tokens.create_token(
                session, settings(), client, unit, actor=current_principal().actor, days=days
            )
    except (EnterpriseError, AmapiError) as exc:
        session.rollback()
        flash(_("No enrollment token was made: %(why)s", why=str(exc)), "error")
        return _to_unit(unit)
    session.commit()
    return redirect(url_for("console.org_unit_amapi_sheet", unit_id=unit.id, token_id=row.id))  # type: ignore[return-value]


def _token(unit: OrgUnit, token_id: int) -> AmapiEnrollmentToken:
    row = db_session().get(AmapiEnrollmentToken, token_id)
    if row is None or row.org_unit_id != unit.id:
        abort(404)
    return row


@bp.route("/org-units/<int:unit_id>/amapi-tokens/<int:token_id>/sheet")
@needs(Permission.ENROLLMENT_WRITE)
def org_unit_amapi_sheet(unit_id: int, token_id: int) -> Response:
    """The printable sheet: the QR code Google made (it carries the token), unit, expiry, steps."""
    unit = _unit(unit_id)
    row = _token(unit, token_id)
    session = db_session()
    html = render_template(
        "console/amapi_sheet.html",
        token=row,
        state=tokens.token_state(row),
        unit_path_ja=orgunits.path_label(session, unit),
        unit_path_en=orgunits.path_label(session, unit, english=True),
        qr_svg=qr_svg(tokens.qr_payload(settings(), row), scale=3, title="Android Management API QR"),
        expires_local=row.expires_at.astimezone(JST).strftime("%Y-%m-%d %H:%M") if row.expires_at else "—",
        expires_utc=row.expires_at.strftime("%Y-%m-%d %H:%M") if row.expires_at else "—",
        organization=settings().organization_name,
    )
    response = Response(html, status=200, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/org-units/<int:unit_id>/amapi-tokens/<int:token_id>/revoke", methods=["POST"])
@needs(Permission.ENROLLMENT_WRITE)
def org_unit_amapi_token_revoke(unit_id: int, token_id: int) -> Response:
    unit = _unit(unit_id)
    row = _token(unit, token_id)
    session = db_session()
    client = amapi_client_for(session, settings())
    if client is None:
        abort(409)
    try:
        with client:
            tokens.revoke_token(session, client, row, actor=current_principal().actor)
    except AmapiError as exc:
        session.rollback()
        flash(_("The token could not be revoked: %(why)s", why=str(exc)), "error")
        return _to_unit(unit)
    session.commit()
    flash(_("Revoked."), "ok")
    return _to_unit(unit)
