"""Devices: the filterable table with bulk commands, and one device with its live command history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import fields, validate
from sqlalchemy import select

from commands.catalog import CATALOG, CommandParamsError, CommandType, UnknownCommand, get_command_type
from commands.incidents.lock_text import lock_text_for
from commands.inventory_refresh import INVENTORY_KINDS, queue_inventory_refresh
from commands.queue import CommandRefused, CommandStateError, cancel_command, enqueue_command
from enrollment.out_of_service import OutOfServiceRefused, take_out_of_service
from mdm.doors.appctx import command_context, db_session, settings
from mdm.ground import clock
from mdm.ground.models import (
    Command,
    CommandStatus,
    Device,
    DeviceFacts,
    InstalledCertificate,
    InstalledProfile,
)
from mdm.services.device_labels import LIMITS, DeviceLabelsUpdateSchema, DuplicateAssetTag, set_device_labels
from mdm.services.devices import MAX_REENROLL_HOURS, allow_reenroll
from web.api.schemas import COMPLIANCE_STATES, Text
from web.console.blueprint import bp
from web.console.forms import CommandForm, DeviceFilterForm, FormSchema, load_form
from web.console.guard import ask_confirmation, confirmed, current_principal, needs
from web.console.labels import RULES, command_label, failure_label, status_label
from web.hostile_input import loads_bounded
from web.queries import (
    device_apps,
    device_changes,
    device_commands,
    device_compliance_status,
    device_findings,
    device_foreign_results,
    search_alerts,
    search_devices,
    visible_command,
    visible_device,
    visible_devices,
)
from web.rbac import Permission, Principal, may_send, may_send_named
from web.unit_choices import unit_choices

# -- labels of inventory, compliance and alert values, in the console's language ----------------

SEVERITY = {
    "ok": _l("OK"),
    "info": _l("info"),
    "warning": _l("warning"),
    "critical": _l("critical"),
}
COMPLIANCE = {
    "compliant": _l("compliant"),
    "noncompliant": _l("non-compliant"),
    "unknown": _l("not evaluated"),
}
CHANGES = {
    "os_upgraded": _l("OS upgraded"),
    "os_downgraded": _l("OS downgraded"),
    "app_installed": _l("App installed"),
    "app_removed": _l("App removed"),
    "app_updated": _l("App updated"),
    "battery_low": _l("Battery low"),
    "supervision_changed": _l("Supervision changed"),
    "profile_installed": _l("Profile installed"),
    "profile_removed": _l("Profile removed"),
    "certificate_added": _l("Certificate added"),
    "certificate_removed": _l("Certificate removed"),
    "passcode_changed": _l("Passcode changed"),
    "device_info_changed": _l("Device information changed"),
}
UNAUTHORIZED_REASONS = {
    "blocked": _l("on the block list"),
    "not_allowed": _l("not on the allow list"),
    "finding": _l("flagged by the last compliance check"),
}


def _label(table: dict[str, Any]) -> Any:
    return lambda value: str(table.get(value, value)) if value is not None else "—"


@bp.app_context_processor
def _inventory_labels() -> dict[str, Any]:
    return {
        "severity_label": _label(SEVERITY),
        "compliance_label": _label(COMPLIANCE),
        "rule_label": _label(RULES),
        "change_label": _label(CHANGES),
        "unauthorized_label": _label(UNAUTHORIZED_REASONS),
    }


class InventoryDeviceFilterForm(DeviceFilterForm):
    """The devices list's filters with compliance (now evaluated) and "has app X"."""

    compliance = fields.String(validate=validate.OneOf(COMPLIANCE_STATES))
    app = Text(validate=validate.Length(max=255))
    unit_q = Text(validate=validate.Length(max=100))  # narrows the unit drop-down, not the list


def sendable_commands(principal: Principal, platform: str | None = None) -> list[CommandType]:
    """The commands the principal may send, loss-and-theft ones first (what the hotline needs);
    on a device's page only those its platform has (an Android agent has no Activation Lock)."""
    return [
        kind
        for kind in CATALOG.in_menu_order()
        if may_send(principal, kind) and (platform is None or platform in kind.platforms)
    ]


@bp.route("/devices")
@needs(Permission.DEVICE_READ)
def devices() -> str:
    session = db_session()
    principal = current_principal()
    data, errors = load_form(InventoryDeviceFilterForm(), request.args)
    filters: dict[str, Any] = {
        k: v for k, v in data.items() if k not in ("seen_within_hours", "not_seen_for_hours", "unit_q")
    }
    now = clock.now()
    if data.get("seen_within_hours"):
        filters["seen_since"] = now - timedelta(hours=data["seen_within_hours"])
    if data.get("not_seen_for_hours"):
        filters["not_seen_since"] = now - timedelta(hours=data["not_seen_for_hours"])
    if data.get("unit_id") is not None and not principal.sees_unit(data["unit_id"]):
        errors = {"unit_id": [_("Unknown unit.")]}
    if errors:
        filters = {}
    result = search_devices(session, principal, {**filters, "per_page": 50, "sort": "-last_seen"})
    return render_template(
        "console/devices.html",
        result=result,
        filters=request.args,
        query={k: v for k, v in request.args.items() if k != "page" and v},
        errors=errors,
        units=unit_choices(session, principal, data.get("unit_q", ""), data.get("unit_id")),
        commands=sendable_commands(principal),
    )


@bp.route("/devices/<int:device_id>")
@needs(Permission.DEVICE_READ)
def device(device_id: int) -> str:
    session = db_session()
    principal = current_principal()
    found = visible_device(session, principal, device_id)
    if found is None:
        abort(404)
    from mdm.services.orgunits import path_label
    from web.console.continuity import may_keep_as_spare, spare_state
    from web.console.profiles import device_profile_rows

    alerts = None
    if principal.can(Permission.ALERT_READ):
        alerts = search_alerts(session, principal, {"device_id": found.id, "per_page": 20}).items
    return render_template(
        "console/device.html",
        device=found,
        unit_path=path_label(session, found.org_unit) if found.org_unit else None,
        history=device_commands(session, found),
        foreign_results=device_foreign_results(session, found),
        lock=_lock_texts(session, found),
        commands=sendable_commands(principal, found.platform),
        station_text=lock_text_for(session, found.org_unit),
        pending_states=CommandStatus.PENDING,
        compliance=device_compliance_status(session, found.id),
        facts=session.get(DeviceFacts, found.id),
        apps=device_apps(session, found),
        profiles=session.scalars(
            select(InstalledProfile)
            .where(InstalledProfile.device_id == found.id)
            .order_by(InstalledProfile.identifier)
        ).all(),
        certificates=session.scalars(
            select(InstalledCertificate)
            .where(InstalledCertificate.device_id == found.id)
            .order_by(InstalledCertificate.not_after.is_(None), InstalledCertificate.not_after)
        ).all(),
        changes=device_changes(session, found.id, {"per_page": 100}).items,
        findings=device_findings(session, found.id),
        alerts=alerts,
        profile_states=device_profile_rows(session, found)
        if principal.can(Permission.PROFILE_READ)
        else None,
        spare=spare_state(session, found),
        may_keep_as_spare=may_keep_as_spare(session, found),
        may_refresh=all(may_send_named(principal, kind) for kind in INVENTORY_KINDS),
        # An Android agent is woken by its long poll, and over MQTT where the site runs a broker.
        mqtt_wakeup=bool(settings().mqtt_url),
        now=clock.now(),
    )


def _lock_texts(session: Any, device: Device) -> dict[str, Any] | None:
    from commands.incidents.lock_state import device_lock_view
    from web.console.hotline import lock_texts

    view = device_lock_view(session, device)
    return None if view is None else lock_texts(view.as_dict())


@bp.route("/devices/<int:device_id>/inventory/refresh", methods=["POST"])
@needs(Permission.COMMAND_QUEUE)
def refresh_inventory(device_id: int) -> Response:
    """Ask the device for a full inventory now; kinds it has not fetched yet are not queued twice."""
    principal = current_principal()
    session = db_session()
    found = visible_device(session, principal, device_id)
    if found is None:
        abort(404)
    if not all(may_send_named(principal, kind) for kind in INVENTORY_KINDS):
        abort(403)
    try:
        queue_inventory_refresh(session, found, principal.actor, context=command_context())
    except CommandRefused as exc:
        session.rollback()
        flash(_("Inventory not requested: %(reason)s", reason=str(exc)), "error")
    else:
        session.commit()
        flash(_("Inventory requested; the device answers the next time it connects."), "ok")
    return redirect(url_for("console.device", device_id=device_id))  # type: ignore[return-value]


def command_row(command: Command) -> dict[str, Any]:
    updated = max(
        t
        for t in (
            command.queued_at,
            command.sent_at,
            command.acknowledged_at,
            command.error_at,
            command.not_now_at,
            command.cancelled_at,
            command.expired_at,
            command.failed_at,
        )
        if t is not None
    )
    return {
        "uuid": command.uuid,
        "request_type": command.request_type,
        "label": command_label(command.request_type),
        "status": command.status,
        "status_label": status_label(command.status),
        "failure_reason": failure_label(command.failure_reason),
        "requested_by": command.requested_by,
        "queued_at": command.queued_at.isoformat(),
        "queued_display": format_datetime(command.queued_at, "yyyy-MM-dd HH:mm:ss"),
        "updated_at": updated.isoformat(),
        "updated_display": format_datetime(updated, "yyyy-MM-dd HH:mm:ss"),
        "pending": command.status in CommandStatus.PENDING,
        "cancellable": command.status in (CommandStatus.QUEUED, CommandStatus.NOT_NOW),
    }


@bp.route("/devices/<int:device_id>/commands.json")
@needs(Permission.COMMAND_READ)
def device_commands_json(device_id: int) -> Response:
    """Polled by console.js every few seconds while the device page is open."""
    session = db_session()
    found = visible_device(session, current_principal(), device_id)
    if found is None:
        abort(404)
    session.refresh(found)
    return jsonify(
        device={
            "id": found.id,
            "enrollment_state": found.enrollment_state,
            "last_seen_at": found.last_seen_at.isoformat() if found.last_seen_at else None,
        },
        commands=[command_row(c) for c in device_commands(session, found)],
    )


def _params(kind: CommandType, data: dict[str, Any]) -> dict[str, Any]:
    """Command parameters from the form: the lock-screen fields for a command that shows them
    (DeviceLock, EnableLostMode), or the advanced JSON field."""
    request_type = kind.request_type
    if kind.shows_lock_screen:
        return kind.lock_screen_params(data.get("message"), data.get("phone_number"))
    if data.get("params_json"):
        try:
            value = loads_bounded(data["params_json"])
        except ValueError as exc:  # not JSON, or beyond the bounds of web.hostile_input
            raise CommandParamsError(request_type, {"params_json": [_("not valid JSON")]}) from exc
        if not isinstance(value, dict):
            raise CommandParamsError(request_type, {"params_json": [_("must be a JSON object")]})
        return value
    return {}


@bp.route("/devices/commands", methods=["POST"])
@needs(Permission.COMMAND_QUEUE_HOTLINE)
def send_command() -> Response | str:
    """Queue one command for one or many devices (the bulk form posts several device_id)."""
    principal = current_principal()
    session = db_session()
    ids = []
    for raw in request.form.getlist("device_id"):
        if raw.isdigit() and len(raw) < 10:
            ids.append(int(raw))
    back = request.form.get("back") if request.form.get("back", "").startswith("/console/") else None
    back = back or url_for("console.devices")
    data, errors = load_form(CommandForm(), request.form)
    targets = visible_devices(session, principal, ids)
    if not targets:
        flash(_("Select at least one device."), "error")
        return redirect(back)  # type: ignore[return-value]
    if errors:
        flash(_("The command form has errors: %(fields)s", fields=", ".join(sorted(errors))), "error")
        return redirect(back)  # type: ignore[return-value]
    request_type = data["request_type"]
    try:
        kind = get_command_type(request_type)
    except UnknownCommand:
        flash(_("Unknown command."), "error")
        return redirect(back)  # type: ignore[return-value]
    if not may_send(principal, kind):
        abort(403)
    try:
        params = kind.validate(_params(kind, data))
    except CommandParamsError as exc:
        flash(_("Invalid parameters: %(fields)s", fields=", ".join(sorted(exc.fields))), "error")
        return redirect(back)  # type: ignore[return-value]
    if not confirmed():
        names = ", ".join(d.device_name or d.serial_number or str(d.id) for d in targets[:10])
        more = len(targets) - 10
        if more > 0:
            names += _(" and %(n)d more", n=more)
        return ask_confirmation(
            _("Send %(command)s", command=command_label(request_type)),
            _(
                "This queues “%(command)s” for %(count)d device(s): %(names)s. Each device carries it out "
                "the next time it connects; a queued command can be cancelled until then.",
                command=command_label(request_type),
                count=len(targets),
                names=names,
            ),
            action_label=_("Send to %(count)d device(s)", count=len(targets)),
        )
    queued, refused = 0, []
    for target in targets:
        try:
            enqueue_command(
                session, target, request_type, params, actor=principal.actor, context=command_context()
            )
            queued += 1
        except CommandRefused as exc:
            refused.append(f"{target.device_name or target.id}: {exc.bilingual}")
    session.commit()
    if queued:
        flash(
            _(
                "Queued %(command)s for %(count)d device(s).",
                command=command_label(request_type),
                count=queued,
            ),
            "ok",
        )
    for line in refused:
        flash(_("Not queued: %(reason)s", reason=line), "error")
    return redirect(back)  # type: ignore[return-value]


@bp.route("/commands/<string(maxlength=64):command_uuid>/cancel", methods=["POST"])
@needs(Permission.COMMAND_CANCEL)
def cancel(command_uuid: str) -> Response | str:
    principal = current_principal()
    session = db_session()
    command = visible_command(session, principal, command_uuid)
    if command is None:
        abort(404)
    if not (principal.can(Permission.COMMAND_QUEUE) or may_send_named(principal, command.request_type)):
        abort(403)
    device_obj = session.get(Device, command.device_id)
    back = url_for("console.device", device_id=command.device_id)
    if not confirmed():
        return ask_confirmation(
            _("Cancel command"),
            _(
                "This cancels “%(command)s” for %(device)s. The device will not receive it.",
                command=command_label(command.request_type),
                device=(device_obj.device_name if device_obj else None) or command.device_id,
            ),
            action_label=_("Cancel the command"),
        )
    try:
        cancel_command(session, command, actor=principal.actor)
        session.commit()
        flash(_("Command cancelled."), "ok")
    except CommandStateError:
        session.rollback()
        flash(_("The device has already fetched this command; it can no longer be cancelled."), "error")
    return redirect(back)  # type: ignore[return-value]


# -- asset tag and user ------------------------------------------------------------------------------

LABEL_NAMES = {"asset_tag": _l("Asset tag"), "assigned_user": _l("User")}


@bp.route("/devices/<int:device_id>/labels", methods=["POST"])
@needs(Permission.DEVICE_WRITE)
def device_labels(device_id: int) -> Response:
    """The asset tag (資産番号) and user form of the device page; blank clears a label."""
    principal = current_principal()
    session = db_session()
    found = visible_device(session, principal, device_id)
    if found is None:
        abort(404)
    back = redirect(url_for("console.device", device_id=device_id))
    form = {name: request.form[name] for name in LIMITS if name in request.form}
    schema = DeviceLabelsUpdateSchema()
    errors = schema.validate(form)
    if errors:
        for name in sorted(errors):
            flash(
                _(
                    "Not saved: %(field)s must be one line of at most %(n)d characters.",
                    field=LABEL_NAMES.get(name, name),
                    n=LIMITS.get(name, 0),
                ),
                "error",
            )
        return back  # type: ignore[return-value]
    try:
        changed = set_device_labels(session, found, schema.load(form), actor=principal.actor)
    except DuplicateAssetTag:
        session.rollback()
        tag = form.get("asset_tag", "").strip()
        flash(_("Not saved: asset tag %(tag)s is already on another tablet.", tag=tag), "error")
        return back  # type: ignore[return-value]
    session.commit()
    flash(_("Asset tag and user saved.") if changed else _("Nothing changed."), "ok")
    return back  # type: ignore[return-value]


class ReenrollForm(FormSchema):
    hours = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_REENROLL_HOURS))


@bp.route("/devices/<int:device_id>/reenroll", methods=["POST"])
@needs(Permission.DEVICE_WRITE)
def device_reenroll(device_id: int) -> Response:
    """Let the tablet bind a new identity for a few hours (mdm.services.devices.allow_reenroll; audited)."""
    principal = current_principal()
    session = db_session()
    found = visible_device(session, principal, device_id)
    if found is None:
        abort(404)
    back = redirect(url_for("console.device", device_id=device_id))
    data, errors = load_form(ReenrollForm(), request.form)
    if errors:
        flash(_("Not allowed: hours must be a number from 1 to %(n)d.", n=MAX_REENROLL_HOURS), "error")
        return back  # type: ignore[return-value]
    allow_reenroll(session, found, hours=data["hours"], actor=principal.actor)
    session.commit()
    flash(_("Re-enrollment allowed for %(n)d hours.", n=data["hours"]), "ok")
    return back  # type: ignore[return-value]


@bp.route("/devices/<int:device_id>/out-of-service", methods=["POST"])
@needs(Permission.DEVICE_WRITE)
def device_out_of_service(device_id: int) -> Response:
    """Take an enrolled Android record out of service (a serial_conflict alert), with a reason."""
    principal = current_principal()
    session = db_session()
    found = visible_device(session, principal, device_id)
    if found is None:
        abort(404)
    back = redirect(url_for("console.device", device_id=device_id))
    try:
        take_out_of_service(session, found, actor=principal.actor, reason=request.form.get("reason"))
    except OutOfServiceRefused as exc:
        session.rollback()
        if exc.field == "reason":
            flash(_("A reason is required."), "error")
        else:
            flash(_("Not possible: %(message)s", message=str(exc)), "error")
        return back  # type: ignore[return-value]
    session.commit()
    flash(_("The record is out of service; its certificates are revoked. The tablet may enroll again."), "ok")
    return back  # type: ignore[return-value]
