"""Configuration profiles in the console: the list, creating one from a template or a JSON spec,
and a profile's page (payloads, versions, assignments, assign / unassign, preview, export)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import func, select

from mdm.doors.appctx import command_context, db_session, settings
from mdm.ground.ca import CANotReady
from mdm.ground.models import Device, OrgUnit, Profile, ProfileAssignment, ProfileVersion
from profiles import assignment as assignments
from profiles import export as exports
from profiles import service
from profiles.rendering import ANDROID, APPLE, RenderError
from profiles.signing import server_render_context
from profiles.summary import dotted_messages, has_secrets, payload_summaries, payload_title, redacted_spec
from profiles.templates import list_templates
from web.console.blueprint import bp
from web.console.guard import ask_confirmation, confirmed, current_principal, needs
from web.console.profile_text import summary_text
from web.hostile_input import loads_bounded
from web.queries import visible_unit, visible_units
from web.rbac import Permission

MAX_SPEC_CHARS = 900_000

# -- desired versus installed, per device (issue #19 item 2) -------------------------------------------

# The state of one profile on one device, worst first; shown with the same words on the device page
# and the unit's page.
PROFILE_STATES = {
    "error": _l("refused by the device"),
    "missing": _l("not installed"),
    "installing": _l("install on its way"),
    "outdated": _l("older version installed"),
    "updating": _l("update on its way"),
    "removing": _l("removal on its way"),
    "unwanted": _l("no longer assigned, still installed"),
    "foreign": _l("not installed by Hikeshi"),
    "installed": _l("installed"),
}
PROFILE_STATE_ORDER = {name: i for i, name in enumerate(PROFILE_STATES)}


def _profile_state(state: Any) -> str:
    if state.is_foreign:
        return "foreign"
    if state.last_error:
        return "error"
    if state.desired_version is None:
        if state.pending_action == assignments.REMOVE:
            return "removing"
        return "unwanted" if state.installed_version is not None else "installed"
    if state.installed_version is None:
        return "installing" if state.pending_action == assignments.INSTALL else "missing"
    if state.installed_version < state.desired_version:
        return "updating" if state.pending_action == assignments.INSTALL else "outdated"
    return "installed"


def device_profile_rows(session: Any, device: Device) -> list[dict[str, Any]]:
    """The API's /devices/<id>/profiles for the console: per profile, desired and installed version,
    what is in flight, when the device last confirmed it and its last error; worst first."""
    states = [
        s
        for s in assignments.device_profile_states(session, device)
        # A profile neither wanted nor installed nor in flight is history, not a state.
        if s.is_foreign
        or s.desired_version is not None
        or s.installed_version is not None
        or s.pending_action
    ]
    ids = sorted({s.profile_id for s in states if s.profile_id is not None})
    names: dict[int, str] = {}
    if ids:
        names = dict(session.execute(select(Profile.id, Profile.name_ja).where(Profile.id.in_(ids))).all())
    rows = []
    for s in states:
        state = _profile_state(s)
        rows.append(
            {
                "identifier": s.identifier,
                "profile_id": s.profile_id,
                "name": names.get(s.profile_id) if s.profile_id is not None else s.foreign_display_name,
                "desired_version": s.desired_version,
                "installed_version": s.installed_version,
                "pending_action": s.pending_action,
                "pending_version": s.pending_version,
                "last_verified_at": s.last_verified_at,
                "last_error": s.last_error,
                "state": state,
                "state_label": str(PROFILE_STATES[state]),
                "ok": state in ("installed", "foreign"),
            }
        )
    rows.sort(key=lambda r: (PROFILE_STATE_ORDER[str(r["state"])], str(r["identifier"])))
    return rows


def _profile_or_404(profile_id: int) -> Profile:
    profile = service.get_profile(db_session(), profile_id)
    if profile is None:
        abort(404)
    return profile


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value.strip()) > 9:
        return None
    return int(value.strip())


def _clean_text(value: str | None, limit: int) -> str:
    text = (value or "").strip()
    if len(text) > limit or "\x00" in text:
        return ""
    return text


def identifier_base(public_url: str) -> str:
    """The site's reverse-DNS name (https://mdm.fd.example.jp → jp.example.fd.mdm): the prefix a
    new profile's identifier is offered under, so nobody has to invent one at 2 a.m."""
    host = (urlsplit(public_url).hostname or "").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = [label for label in host.split(".") if label]
        if len(labels) >= 2 and all(label.replace("-", "").isalnum() and label.isascii() for label in labels):
            return ".".join(reversed(labels))
    return "local.hikeshi"


def suggested_identifiers(session: Any) -> dict[str, str]:
    """Per template: `<site>.<template>`, numbered when a profile already has it."""
    base = identifier_base(settings().public_url)
    taken = set(session.scalars(select(Profile.identifier).where(Profile.identifier.like(base + ".%"))))
    out = {}
    for template in list_templates():
        candidate, n = f"{base}.{template.slug}", 2
        while candidate in taken:
            candidate, n = f"{base}.{template.slug}-{n}", n + 1
        out[template.slug] = candidate
    return out


def _list_page(
    errors: dict[str, list[str]] | None = None, form: dict[str, str] | None = None
) -> str | tuple[str, int]:
    principal = current_principal()
    session = db_session()
    stmt = select(ProfileAssignment.profile_id, func.count(ProfileAssignment.id)).group_by(
        ProfileAssignment.profile_id
    )
    if principal.scope_unit_ids is not None:
        stmt = stmt.where(ProfileAssignment.org_unit_id.in_(sorted(principal.scope_unit_ids)))
    counts = {profile_id: int(count) for profile_id, count in session.execute(stmt)}
    html = render_template(
        "console/profiles.html",
        profiles=service.list_profiles(session),
        counts=counts,
        summaries=payload_summaries,
        title_of=payload_title,
        templates=list_templates(),
        suggested=suggested_identifiers(session),
        errors=errors or {},
        form=form or {},
    )
    return (html, 400) if errors else html


@bp.route("/profiles")
@needs(Permission.PROFILE_READ)
def profiles() -> str | tuple[str, int]:
    return _list_page()


@bp.route("/profiles", methods=["POST"])
@needs(Permission.PROFILE_WRITE)
def profile_create() -> Response | str | tuple[str, int]:
    principal = current_principal()
    session = db_session()
    form = request.form
    try:
        if form.get("source") == "template":
            slug = _clean_text(form.get("template"), 64)
            # Left blank: the identifier the page offered for this template.
            identifier = _clean_text(form.get("identifier"), 200) or suggested_identifiers(session).get(
                slug, ""
            )
            profile = service.create_profile_from_template(
                session,
                principal.actor,
                slug,
                identifier=identifier,
                name_ja=_clean_text(form.get("name_ja"), 128) or None,
                name_en=_clean_text(form.get("name_en"), 128) or None,
                secret_key=settings().secret_key,
            )
        else:
            profile = service.create_profile(
                session, principal.actor, _spec_from_form(form.get("spec")), secret_key=settings().secret_key
            )
    except ValidationError as exc:
        session.rollback()
        return _list_page(dotted_messages(exc.messages), dict(form))
    session.commit()
    flash(_("Created %(name)s.", name=profile.name_ja), "ok")
    return redirect(url_for("console.profile", profile_id=profile.id))  # type: ignore[return-value]


def _spec_from_form(text: str | None) -> Any:
    raw = text or ""
    if len(raw) > MAX_SPEC_CHARS:
        raise ValidationError({"spec": [_("The spec is too large.")]})
    try:
        return loads_bounded(raw)
    except ValueError as exc:  # not JSON, or beyond the bounds of web.hostile_input
        raise ValidationError({"spec": [_("Not valid JSON: %(error)s", error=str(exc))]}) from exc


def _detail_page(
    profile: Profile, errors: dict[str, list[str]] | None = None, spec_text: str | None = None
) -> str | tuple[str, int]:
    principal = current_principal()
    session = db_session()
    rows = [
        r
        for r in assignments.list_assignments(session, profile=profile)
        if principal.sees_unit(r.org_unit_id)
    ]
    units = {
        u.id: u for u in session.scalars(select(OrgUnit).where(OrgUnit.id.in_([r.org_unit_id for r in rows])))
    }
    versions = list(
        session.scalars(
            select(ProfileVersion)
            .where(ProfileVersion.profile_id == profile.id)
            .order_by(ProfileVersion.version.desc())
        )
    )
    # Secrets are shown to nobody once entered; a writer keeps one by leaving ******** in place.
    redact = has_secrets(profile.spec)
    spec = redacted_spec(profile.spec) if redact else profile.spec
    preview: dict[str, Any] | None = None
    preview_error: str | None = None
    try:
        results = service.preview_profile(profile, server_render_context(session, settings()))
        preview = {
            APPLE: results[APPLE],
            ANDROID: results[ANDROID],
            "apple_text": results[APPLE].content.decode("utf-8"),
            "android_text": json.dumps(
                results[ANDROID].content, ensure_ascii=False, indent=2, sort_keys=True
            ),
        }
    except (CANotReady, RenderError) as exc:
        preview_error = str(exc)
    assigned_ids = {r.org_unit_id for r in rows}
    html = render_template(
        "console/profile.html",
        profile=profile,
        payloads=[
            {**row, "summary": summary_text(payload)}
            for row, payload in zip(
                payload_summaries(profile.spec), profile.spec.get("payloads", []), strict=True
            )
        ],
        title_of=payload_title,
        versions=versions,
        assignments=[(r, units.get(r.org_unit_id)) for r in rows],
        units=[u for u in visible_units(session, principal) if u.id not in assigned_ids],
        preview=preview,
        preview_error=preview_error,
        spec_text=spec_text if spec_text is not None else json.dumps(spec, ensure_ascii=False, indent=2),
        redacted=redact,
        errors=errors or {},
    )
    return (html, 400) if errors else html


@bp.route("/profiles/<int:profile_id>")
@needs(Permission.PROFILE_READ)
def profile(profile_id: int) -> str | tuple[str, int]:
    return _detail_page(_profile_or_404(profile_id))


@bp.route("/profiles/<int:profile_id>", methods=["POST"])
@needs(Permission.PROFILE_WRITE)
def profile_update(profile_id: int) -> Response | str | tuple[str, int]:
    principal = current_principal()
    session = db_session()
    profile = _profile_or_404(profile_id)
    if principal.scoped and any(
        not principal.sees_unit(r.org_unit_id) for r in assignments.list_assignments(session, profile=profile)
    ):
        abort(403)
    text = request.form.get("spec")
    try:
        profile, summary = assignments.update_profile_and_apply(
            session,
            settings(),
            profile,
            _spec_from_form(text),
            actor=principal.actor,
            context=command_context(),
        )
    except ValidationError as exc:
        session.rollback()
        return _detail_page(_profile_or_404(profile_id), dotted_messages(exc.messages), text)
    except (CANotReady, RenderError) as exc:
        session.rollback()
        return _detail_page(_profile_or_404(profile_id), {"spec": [str(exc)]}, text)
    session.commit()
    if summary is None:
        flash(_("Nothing changed."), "ok")
    else:
        flash(
            _(
                "Saved as version %(version)d; %(installs)d installs queued.",
                version=profile.version,
                installs=len(summary.installs),
            ),
            "ok",
        )
    return redirect(url_for("console.profile", profile_id=profile.id))  # type: ignore[return-value]


@bp.route("/profiles/<int:profile_id>/assign", methods=["POST"])
@needs(Permission.PROFILE_WRITE)
def profile_assign(profile_id: int) -> Response | str | tuple[str, int]:
    principal = current_principal()
    session = db_session()
    profile = _profile_or_404(profile_id)
    unit_id = _int(request.form.get("org_unit_id"))
    unit = visible_unit(session, principal, unit_id) if unit_id is not None else None
    if unit_id is None:
        # No unit chosen is the default: a new profile reaches no tablet until someone says where.
        return _detail_page(profile, {"org_unit_id": [_("Choose the unit to assign the profile to.")]})
    if unit is None:
        return _detail_page(profile, {"org_unit_id": [_("Unknown unit.")]})
    try:
        summary = assignments.assign_profile(
            session, settings(), profile, unit, actor=principal.actor, context=command_context()
        )
    except ValidationError as exc:
        session.rollback()
        return _detail_page(
            _profile_or_404(profile_id), {"org_unit_id": dotted_messages(exc.messages).get("unit", [])}
        )
    except (CANotReady, RenderError) as exc:
        session.rollback()
        return _detail_page(_profile_or_404(profile_id), {"org_unit_id": [str(exc)]})
    session.commit()
    flash(
        _(
            "Assigned to %(unit)s; %(installs)d installs queued.",
            unit=unit.name_ja,
            installs=len(summary.installs),
        ),
        "ok",
    )
    return redirect(url_for("console.profile", profile_id=profile.id))  # type: ignore[return-value]


@bp.route("/profiles/<int:profile_id>/unassign/<int:unit_id>", methods=["POST"])
@needs(Permission.PROFILE_WRITE)
def profile_unassign(profile_id: int, unit_id: int) -> Response | str:
    principal = current_principal()
    session = db_session()
    profile = _profile_or_404(profile_id)
    unit = visible_unit(session, principal, unit_id)
    if unit is None or not assignments.list_assignments(session, profile=profile, unit=unit):
        abort(404)
    if not confirmed():
        return ask_confirmation(
            _("Unassign profile"),
            _(
                "This removes %(profile)s from every tablet of %(unit)s and below that does not get it "
                "through another unit.",
                profile=profile.name_ja,
                unit=unit.name_ja,
            ),
            action_label=_("Unassign profile"),
        )
    summary = assignments.unassign_profile(
        session, settings(), profile, unit, actor=principal.actor, context=command_context()
    )
    session.commit()
    flash(
        _(
            "Unassigned from %(unit)s; %(removals)d removals queued.",
            unit=unit.name_ja,
            removals=len(summary.removals),
        ),
        "ok",
    )
    return redirect(url_for("console.profile", profile_id=profile.id))  # type: ignore[return-value]


@bp.route("/profiles/<int:profile_id>/export/<platform>")
@needs(Permission.PROFILE_WRITE)
def profile_export(profile_id: int, platform: str) -> Response:
    session = db_session()
    profile = _profile_or_404(profile_id)
    if platform not in (APPLE, ANDROID):
        abort(404)
    try:
        exported = exports.export_profile(
            session, settings(), profile, platform, actor=current_principal().actor
        )
    except (CANotReady, RenderError) as exc:
        flash(str(exc), "error")
        return redirect(url_for("console.profile", profile_id=profile.id))  # type: ignore[return-value]
    session.commit()  # the audit event (and a shared rendering stored on first use)
    return Response(
        exported.data,
        content_type=exported.content_type,
        headers={"Content-Disposition": f'attachment; filename="{exported.filename}"'},
    )
