"""Org units: the tree, adding units, renaming and moving them."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from commands.incidents import IncidentInputError, set_incident_policy
from commands.incidents.lock_text import lock_text_for, set_unit_lock_text
from mdm.doors.appctx import db_session
from mdm.ground.models import OrgUnitKind, UnitType
from mdm.services.orgunits import OrgUnitError, create_unit, move_unit, unit_tree, update_unit, walk
from mdm.services.unit_policy import POLICY_FIELDS, set_unit_policy
from web.api.compliance_policy import CompliancePolicyUpdateSchema, compliance_policy_view
from web.api.incident_policy import IncidentPolicyUpdateSchema, default_remind_hours, policy_view
from web.console.blueprint import bp
from web.console.forms import OrgUnitEditForm, OrgUnitForm, load_form
from web.console.guard import ask_confirmation, confirmed, current_principal, needs
from web.queries import visible_unit, visible_units
from web.rbac import Permission


def _page(errors: dict[str, list[str]] | None = None, form: dict[str, str] | None = None) -> str:
    principal = current_principal()
    session = db_session()
    nodes = [n for n in walk(unit_tree(session)) if principal.sees_unit(n.unit.id)]
    return render_template(
        "console/orgunits.html",
        nodes=nodes,
        units=visible_units(session, principal),
        kinds=OrgUnitKind.LABELS,
        unit_types=UnitType.LABELS,
        errors=errors or {},
        form=form or {},
    )


@bp.route("/org-units")
@needs(Permission.ORGUNIT_READ)
def org_units() -> str:
    return _page()


@bp.route("/org-units", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def org_unit_create() -> Response | str:
    principal = current_principal()
    session = db_session()
    data, errors = load_form(OrgUnitForm(), request.form)
    if not errors:
        parent_id = data.get("parent_id")
        if parent_id is None and principal.scoped:
            errors = {"parent_id": [_("Choose a parent unit inside your scope.")]}
        elif parent_id is not None and visible_unit(session, principal, parent_id) is None:
            errors = {"parent_id": [_("Unknown unit.")]}
    if not errors:
        try:
            unit = create_unit(session, data, actor=principal.actor)
            session.commit()
            flash(_("Created %(name)s.", name=unit.name_ja), "ok")
            return redirect(url_for("console.org_units"))  # type: ignore[return-value]
        except OrgUnitError as exc:
            session.rollback()
            errors = {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in exc.fields.items()}
    return _page(errors, dict(request.form))


@bp.route("/org-units/<int:unit_id>", methods=["GET", "POST"])
@needs(Permission.ORGUNIT_READ)
def org_unit(unit_id: int) -> Response | str:
    principal = current_principal()
    session = db_session()
    unit = visible_unit(session, principal, unit_id)
    if unit is None:
        abort(404)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        if not principal.can(Permission.ORGUNIT_WRITE):
            abort(403)
        data, errors = load_form(OrgUnitEditForm(), request.form)
        new_parent = None
        if not errors and data.get("parent_id") != unit.parent_id:
            if principal.scoped and unit.id == principal.org_unit_id:
                errors = {"parent_id": [_("You cannot move the unit your scope starts at.")]}
            elif data.get("parent_id") is not None:
                new_parent = visible_unit(session, principal, data["parent_id"])
                if new_parent is None:
                    errors = {"parent_id": [_("Unknown unit.")]}
            elif principal.scoped:
                errors = {"parent_id": [_("Choose a parent unit inside your scope.")]}
        moving = not errors and data.get("parent_id") != unit.parent_id
        if moving and not confirmed():
            return ask_confirmation(
                _("Move unit"),
                _(
                    "This moves %(unit)s, with every unit and device below it, under %(parent)s. "
                    "Users scoped to the old parent lose sight of them.",
                    unit=unit.name_ja,
                    parent=new_parent.name_ja if new_parent else _("the top level"),
                ),
                action_label=_("Move"),
            )
        if not errors:
            try:
                update_unit(
                    session,
                    unit,
                    {"name_ja": data["name_ja"], "name_en": data.get("name_en"), "code": data.get("code")},
                    actor=principal.actor,
                )
                if moving:
                    move_unit(session, unit, new_parent, actor=principal.actor)
                session.commit()
                flash(_("Saved."), "ok")
                return redirect(url_for("console.org_unit", unit_id=unit.id))  # type: ignore[return-value]
            except OrgUnitError as exc:
                session.rollback()
                errors = {
                    k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in exc.fields.items()
                }
    return render_template(
        "console/orgunit.html",
        unit=unit,
        units=[u for u in visible_units(session, principal) if u.id != unit.id],
        kinds=OrgUnitKind.LABELS,
        errors=errors,
        incident_policy=policy_view(session, unit) if principal.can(Permission.INCIDENT_READ) else None,
        compliance_policy=(
            compliance_policy_view(session, unit.id) if principal.can(Permission.INCIDENT_READ) else None
        ),
        lock_text=lock_text_for(session, unit),
        inherited_lock_text=lock_text_for(session, unit.parent),
    )


# -- the lock screen of a lost tablet (issue #19 item 1) -------------------------------------------


@bp.route("/org-units/<int:unit_id>/lock-text", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def org_unit_lock_text(unit_id: int) -> Response:
    """Set the message and callback number a lost tablet of this unit shows; blank inherits."""
    principal = current_principal()
    session = db_session()
    unit = visible_unit(session, principal, unit_id)
    if unit is None:
        abort(404)
    back = redirect(url_for("console.org_unit", unit_id=unit.id) + "#lock-text")
    data = {
        "message": (request.form.get("lock_message") or "").replace("\x00", ""),
        "phone_number": (request.form.get("lock_phone") or "").replace("\x00", ""),
    }
    try:
        changed = set_unit_lock_text(session, unit, data, actor=principal.actor)
    except IncidentInputError as exc:
        session.rollback()
        texts = {
            "message": _("the message must be at most 500 characters"),
            "phone_number": _("the callback number may hold only digits, + - ( ) and spaces (up to 32)"),
        }
        problems = "; ".join(str(texts.get(name, name)) for name in sorted(exc.fields))
        flash(_("Lock-screen text not saved: %(problems)s", problems=problems), "error")
        return back  # type: ignore[return-value]
    session.commit()
    flash(_("Lock-screen text saved.") if changed else _("Lock-screen text unchanged."), "ok")
    return back  # type: ignore[return-value]


# -- auto-wipe policy (issue #6 item 4) --------------------------------------------------------------


def _hours(text: str | None) -> int | str | None:
    """A form's hours: blank is None, digits an int; anything else is left for the schema to refuse."""
    text = (text or "").strip()
    if not text:
        return None
    # isdecimal, not isdigit: int() takes full-width digits (IME input) but not superscripts.
    return int(text) if text.isdecimal() and len(text) < 6 else text


@bp.route("/org-units/<int:unit_id>/incident-policy", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def org_unit_incident_policy(unit_id: int) -> Response:
    """Set or turn off (blank hours) the unit's auto-wipe delay and the approvers' reminder."""
    principal = current_principal()
    session = db_session()
    unit = visible_unit(session, principal, unit_id)
    if unit is None:
        abort(404)
    back = redirect(url_for("console.org_unit", unit_id=unit.id))
    hours = _hours(request.form.get("auto_wipe_after_hours"))
    data: dict[str, object] = {"auto_wipe_after_hours": hours}
    remind = _hours(request.form.get("remind_before_hours"))
    if remind is not None:
        data["remind_before_hours"] = remind
    schema = IncidentPolicyUpdateSchema()
    errors = schema.validate(data)
    if errors:
        flash(_("Auto-wipe policy not saved: %(problems)s", problems=_policy_problems(errors)), "error")
        return back  # type: ignore[return-value]
    clean = schema.load(data)
    delay = clean["auto_wipe_after_hours"]
    try:
        set_incident_policy(
            session,
            unit,
            auto_wipe_after_hours=delay,
            remind_before_hours=clean.get("remind_before_hours", default_remind_hours(delay)),
            actor=principal.actor,
        )
    except IncidentInputError as exc:
        session.rollback()
        flash(_("Auto-wipe policy not saved: %(problems)s", problems=_policy_problems(exc.fields)), "error")
        return back  # type: ignore[return-value]
    session.commit()
    if delay is None:
        flash(_("Auto-wipe is off for this unit."), "ok")
    else:
        flash(_("Auto-wipe: %(hours)d hours after the call if not recovered.", hours=delay), "ok")
    return back  # type: ignore[return-value]


def _policy_problems(errors: Mapping[str, object]) -> str:
    texts = {
        "auto_wipe_after_hours": _("hours must be a whole number from 1 to 720, or blank for off"),
        "remind_before_hours": _("the reminder must be 0 to 168 hours and less than the auto-wipe delay"),
    }
    return "; ".join(str(texts.get(name, name)) for name in sorted(errors))


# -- compliance policy: the rules behind compliance alerts (issue #15 item 9) -------------------------


def _text(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def _choice(text: str | None) -> bool | str | None:
    """The supervision select: inherit (blank), yes or no; anything else is left for the schema."""
    text = (text or "").strip()
    return {"": None, "yes": True, "no": False}.get(text, text)


@bp.route("/org-units/<int:unit_id>/compliance-policy", methods=["POST"])
@needs(Permission.ORGUNIT_WRITE)
def org_unit_compliance_policy(unit_id: int) -> Response:
    """Set the unit's own compliance values; a blank field inherits from the units above."""
    principal = current_principal()
    session = db_session()
    unit = visible_unit(session, principal, unit_id)
    if unit is None:
        abort(404)
    back = redirect(url_for("console.org_unit", unit_id=unit.id) + "#compliance-policy")
    form = request.form
    data: dict[str, object] = {
        "minimum_os_version": _text(form.get("minimum_os_version")),
        "offline_limit_hours": _hours(form.get("offline_limit_hours")),
        "require_supervision": _choice(form.get("require_supervision")),
        "inventory_interval_hours": _hours(form.get("inventory_interval_hours")),
        "certificate_warning_days": _hours(form.get("certificate_warning_days")),
        "minimum_android_security_patch": _text(form.get("minimum_android_security_patch")),
    }
    schema = CompliancePolicyUpdateSchema()
    errors = schema.validate(data)
    if errors:
        flash(_("Compliance policy not saved: %(problems)s", problems=_compliance_problems(errors)), "error")
        return back  # type: ignore[return-value]
    clean = schema.load(data)
    own = compliance_policy_view(session, unit.id)["own"]
    changed = {name: clean[name] for name in POLICY_FIELDS if clean[name] != own[name]}
    if not changed:
        flash(_("Compliance policy unchanged."), "ok")
        return back  # type: ignore[return-value]
    try:
        set_unit_policy(session, principal.actor, unit.id, **changed)
    except ValueError:
        session.rollback()
        flash(_("Compliance policy not saved: %(problems)s", problems=_compliance_problems(changed)), "error")
        return back  # type: ignore[return-value]
    session.commit()
    flash(_("Compliance policy saved."), "ok")
    return back  # type: ignore[return-value]


def _compliance_problems(errors: Mapping[str, object]) -> str:
    texts = {
        "minimum_os_version": _("the minimum OS version must look like 17.4 or 17.4.1"),
        "offline_limit_hours": _("the offline limit must be a whole number of hours from 1 to 8760"),
        "require_supervision": _("supervision must be inherit, required or not required"),
        "inventory_interval_hours": _(
            "the inventory interval must be a whole number of hours from 1 to 8760"
        ),
        "certificate_warning_days": _(
            "the certificate warning must be a whole number of days from 1 to 3650"
        ),
        "minimum_android_security_patch": _("the Android security patch level must be a date YYYY-MM-DD"),
    }
    return "; ".join(str(texts.get(name, name)) for name in sorted(errors))
