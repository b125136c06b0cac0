"""Automated Device Enrollment in the console: the ABM server token (the certificate for ABM,
the token upload, its expiry and the last sync), the devices ABM assigned to this server, the
rules that place them, and each unit's ADE profile."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from mdm.doors.appctx import db_session, hikeshi, settings
from mdm.ground.models import AdeDevice, Device, OrgUnit
from mdm.services import orgunits
from mdm.services.ade.client import DepError
from mdm.services.ade.profiles import SHARED_TABLET_SKIP, AdeProfileError, profile_of, save_profile
from mdm.services.ade.schedule import run_sync
from mdm.services.ade.server_token import (
    ServerTokenError,
    active_server_token,
    current_token_key,
    expiry_warning,
    store_server_token,
    token_key_certificate,
)
from mdm.services.ade.sync import NoServerToken
from mdm.services.ade.units import AdeRuleError, add_rule, list_rules
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.rbac import Permission

MAX_TOKEN_FILE = 64 * 1024


def _japanese() -> bool:
    from flask_babel import get_locale

    return str(get_locale() or "ja") == "ja"


def _page(errors: dict[str, list[str]] | None = None) -> Any:
    session = db_session()
    token = active_server_token(session)
    warning = expiry_warning(token)
    units = orgunits.list_units(session)
    unit_names = {u.id: u.name_ja if _japanese() else (u.name_en or u.name_ja) for u in units}
    devices = list(session.scalars(select(AdeDevice).order_by(AdeDevice.serial_number)))
    enrolled = {
        d.id: d
        for d in session.scalars(
            select(Device).where(Device.id.in_([a.device_id for a in devices if a.device_id]))
        )
    }
    profiles = {u.id: profile_of(session, u.id) for u in units}
    html = render_template(
        "console/ade.html",
        token=token,
        warning=(warning.ja if _japanese() else warning.en) if warning else None,
        key=current_token_key(session),
        devices=devices,
        enrolled=enrolled,
        units=units,
        unit_names=unit_names,
        profiles=profiles,
        rules=list_rules(session),
        skipped=len(SHARED_TABLET_SKIP),
        errors=errors or {},
    )
    return (html, 400) if errors else html


@bp.route("/ade")
@needs(Permission.SETTINGS_READ)
def ade_page() -> Any:
    return _page()


@bp.route("/ade/certificate", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def ade_certificate() -> Any:
    session = db_session()
    row = token_key_certificate(session, settings(), actor=current_principal().actor)
    pem = row.cert_pem
    session.commit()
    response = Response(pem, content_type="application/x-pem-file")
    response.headers["Content-Disposition"] = 'attachment; filename="hikeshi-abm.pem"'
    return response


@bp.route("/ade/token", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def ade_token_upload() -> Any:
    session = db_session()
    upload = request.files.get("token")
    data = upload.read(MAX_TOKEN_FILE + 1) if upload else b""
    if not data:
        return _page({"token": [_("Choose the server token file (.p7m) downloaded from ABM.")]})
    try:
        store_server_token(session, settings(), data, actor=current_principal().actor)
    except ServerTokenError as exc:
        session.rollback()
        return _page({"token": [_token_refusal(str(exc))]})
    session.commit()
    flash(_("Stored the ABM server token."), "ok")
    return redirect(url_for("console.ade_page"))


def _token_refusal(reason: str) -> str:
    """Why an upload was refused, in the reader's language (the service says it in English)."""
    if "another certificate" in reason:
        return _(
            "The token is encrypted to another certificate: upload this server's certificate to ABM and download the token again."  # noqa: E501 - one message id
        )
    if "expired" in reason:
        return _("The token has expired: download a new one from ABM.")
    if "no ABM key pair" in reason:
        return _("Download this server's certificate for ABM first.")
    return _("The file is not a server token (.p7m) from ABM.")


@bp.route("/ade/sync", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def ade_sync_now() -> Any:
    # The sync runs in transactions of its own (a failure is recorded after the sync's is rolled
    # back): the request's own (the sign-in bookkeeping) ends first, so SQLite has one writer.
    db_session().commit()
    try:
        result = run_sync(hikeshi().session_factory, settings())
    except (DepError, NoServerToken) as exc:
        flash(_("Sync with ABM failed: %(why)s", why=str(exc)), "error")
        return redirect(url_for("console.ade_page"))
    flash(
        _(
            "Synced with ABM: %(added)d new, %(assigned)d profiles assigned.",
            added=result["added"],
            assigned=result["assigned"],
        ),
        "ok",
    )
    return redirect(url_for("console.ade_page"))


@bp.route("/ade/units/<int:unit_id>/profile", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def ade_profile_save(unit_id: int) -> Any:
    session = db_session()
    unit = session.get(OrgUnit, unit_id)
    if unit is None:
        return _page({"unit": [_("No such unit.")]})
    try:
        save_profile(
            session,
            unit,
            {
                "department": request.form.get("department", ""),
                "support_phone_number": request.form.get("support_phone_number", ""),
            },
            actor=current_principal().actor,
        )
    except AdeProfileError as exc:
        session.rollback()
        del exc  # the schema's English words; the page says it in the reader's language
        return _page(
            {f"profile-{unit_id}": [_("Check the department and the phone number (digits, + and - only).")]}
        )
    session.commit()
    flash(
        _("Saved the ADE profile of %(unit)s; it is sent to ABM at the next sync.", unit=unit.name_ja), "ok"
    )
    return redirect(url_for("console.ade_page"))


@bp.route("/ade/rules", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def ade_rule_add() -> Any:
    session = db_session()
    unit = session.get(OrgUnit, request.form.get("org_unit_id", type=int) or 0)
    if unit is None:
        return _page({"rule": [_("Choose the unit.")]})
    try:
        add_rule(
            session,
            request.form.get("kind", ""),
            request.form.get("value", ""),
            unit,
            actor=current_principal().actor,
        )
    except AdeRuleError as exc:
        session.rollback()
        message = {
            "serial_number": _("Not an Apple serial number."),
            "order_number": _("Enter the order number."),
        }.get(exc.field, _("Choose serial number, order number or default."))
        return _page({"rule": [message]})
    session.commit()
    flash(_("Saved the placement rule."), "ok")
    return redirect(url_for("console.ade_page"))
