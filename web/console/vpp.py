"""Apps and Books in the console (settings): the content token's organisation, location and
expiry (never the token), its upload, a sync now, and the location's apps with their license
counts. Reading needs settings.read; changing needs settings.write."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from mdm.doors.appctx import db_session, hikeshi, settings
from mdm.ground.models import VppAsset, VppAssignment, VppAssignmentState
from mdm.services.vpp.client import VppError
from mdm.services.vpp.schedule import run_sync
from mdm.services.vpp.sync import NoVppToken
from mdm.services.vpp.token import (
    MAX_TOKEN_BYTES,
    VppTokenFileError,
    active_token,
    expiry_warning,
    store_token,
)
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.rbac import Permission


def _japanese() -> bool:
    from flask_babel import get_locale

    return str(get_locale() or "ja") == "ja"


def _page(errors: dict[str, list[str]] | None = None) -> Any:
    session = db_session()
    token = active_token(session)
    warning = expiry_warning(token)
    held = dict(
        session.execute(
            select(VppAssignment.adam_id, func.count())
            .where(VppAssignment.state.in_([VppAssignmentState.PENDING, VppAssignmentState.RELEASING]))
            .group_by(VppAssignment.adam_id)
        ).all()
    )
    html = render_template(
        "console/vpp.html",
        token=token,
        warning=(warning.ja if _japanese() else warning.en) if warning else None,
        assets=list(session.scalars(select(VppAsset).order_by(VppAsset.adam_id))),
        in_progress=held,
        errors=errors or {},
    )
    return (html, 400) if errors else html


@bp.route("/vpp")
@needs(Permission.SETTINGS_READ)
def vpp_page() -> Any:
    return _page()


@bp.route("/vpp/token", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def vpp_token_upload() -> Any:
    session = db_session()
    upload = request.files.get("token")
    data = upload.read(MAX_TOKEN_BYTES + 1) if upload else b""
    if not data:
        return _page(
            {
                "token": [
                    _("Choose the content token file (.vpptoken) downloaded from Apple Business Manager.")
                ]
            }
        )
    try:
        store_token(session, settings(), data, actor=current_principal().actor)
    except VppTokenFileError as exc:
        session.rollback()
        return _page({"token": [_refusal(str(exc))]})
    session.commit()
    flash(_("Stored the Apps and Books content token. Sync to see its location and apps."), "ok")
    return redirect(url_for("console.vpp_page"))


def _refusal(reason: str) -> str:
    """Why an upload was refused, in the reader's language (the service says it in English)."""
    if "expired" in reason:
        return _("The content token has expired: download a new one from Apple Business Manager.")
    if "orgName" in reason:
        return _("The content token names no organisation (orgName).")
    if "expDate" in reason:
        return _("The content token has no valid expiry date (expDate).")
    return _("The file is not an Apps and Books content token (.vpptoken).")


@bp.route("/vpp/sync", methods=["POST"])
@needs(Permission.SETTINGS_WRITE)
def vpp_sync_now() -> Any:
    # The sync has transactions of its own: the request's ends first, so SQLite has one writer.
    db_session().commit()
    try:
        result = run_sync(hikeshi().session_factory, settings())
    except (VppError, NoVppToken) as exc:
        flash(_("Sync with Apps and Books failed: %(why)s", why=str(exc)), "error")
        return redirect(url_for("console.vpp_page"))
    flash(_("Synced with Apps and Books: %(assets)d apps.", assets=result["assets"]), "ok")
    if result["location_changed"]:
        flash(_("The new token is for another location than the one it replaced."), "error")
    return redirect(url_for("console.vpp_page"))
