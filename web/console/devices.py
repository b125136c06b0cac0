"""Devices: the filterable table with bulk commands, and one device with its live command history."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _

from commands.catalog import CommandParamsError, UnknownCommand, all_command_types, get_command_type
from commands.queue import CommandRefused, CommandStateError, cancel_command, enqueue_command
from mdm import clock
from mdm.appctx import db_session
from mdm.models import Command, CommandStatus, Device
from web.console import bp
from web.console.forms import CommandForm, DeviceFilterForm, load_form
from web.console.guard import ask_confirmation, confirmed, current_principal, needs
from web.console.labels import command_label, status_label
from web.queries import (
    device_commands,
    search_devices,
    visible_command,
    visible_device,
    visible_devices,
    visible_units,
)
from web.rbac import HOTLINE_ORDER, Permission, Principal, may_send


def sendable_commands(principal: Principal) -> list[Any]:
    """The commands the principal may send, loss-and-theft ones first (what the hotline needs)."""
    kinds = [kind for kind in all_command_types() if may_send(principal, kind.request_type)]
    rank = {name: i for i, name in enumerate(HOTLINE_ORDER)}
    return sorted(kinds, key=lambda k: (rank.get(k.request_type, len(rank)), k.request_type))


@bp.route("/devices")
@needs(Permission.DEVICE_READ)
def devices() -> str:
    session = db_session()
    principal = current_principal()
    data, errors = load_form(DeviceFilterForm(), request.args)
    filters: dict[str, Any] = {
        k: v for k, v in data.items() if k not in ("seen_within_hours", "not_seen_for_hours")
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
        units=visible_units(session, principal),
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
    from mdm.orgunits import path_label

    return render_template(
        "console/device.html",
        device=found,
        unit_path=path_label(session, found.org_unit) if found.org_unit else None,
        history=device_commands(session, found),
        commands=sendable_commands(principal),
        pending_states=CommandStatus.PENDING,
    )


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
        )
        if t is not None
    )
    return {
        "uuid": command.uuid,
        "request_type": command.request_type,
        "label": command_label(command.request_type),
        "status": command.status,
        "status_label": status_label(command.status),
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


def _params(request_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Command parameters from the form: the lock fields, or the advanced JSON field."""
    if request_type == "DeviceLock":
        params = {}
        if data.get("message"):
            params["Message"] = data["message"]
        if data.get("phone_number"):
            params["PhoneNumber"] = data["phone_number"]
        return params
    if data.get("params_json"):
        try:
            value = json.loads(data["params_json"])
        except json.JSONDecodeError as exc:
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
    if not may_send(principal, request_type):
        abort(403)
    try:
        params = kind.validate(_params(request_type, data))
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
            enqueue_command(session, target, request_type, params, actor=principal.actor)
            queued += 1
        except CommandRefused as exc:
            refused.append(f"{target.device_name or target.id}: {exc}")
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
    if not (principal.can(Permission.COMMAND_QUEUE) or may_send(principal, command.request_type)):
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
