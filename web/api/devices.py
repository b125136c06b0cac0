"""Devices and their commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from commands.catalog import CommandParamsError, UnknownCommand, all_command_types, get_command_type
from commands.queue import (
    CommandRefused,
    CommandStateError,
    TwoPersonCommand,
    cancel_command,
    enqueue_command,
    refuse_direct,
)
from enrollment.out_of_service import OutOfServiceRefused, take_out_of_service
from mdm.doors.appctx import command_context, db_session
from mdm.ground.models import Device
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.api.schemas import (
    CommandPageSchema,
    CommandQuerySchema,
    CommandQueueSchema,
    CommandSchema,
    CommandTypeSchema,
    DeviceDetailSchema,
    DevicePageSchema,
    DeviceQuerySchema,
    ForeignCommandResultPageSchema,
    OutOfServiceSchema,
    PageQuerySchema,
)
from web.errors import ApiError, field_error
from web.queries import (
    search_commands,
    search_devices,
    search_foreign_results,
    visible_command,
    visible_device,
)
from web.rbac import Permission, Principal, may_send, may_send_named

blp = ApiBlueprint("devices", __name__, url_prefix="/api/v1", description="Devices and their commands")


def _seconds(lifetime: timedelta | None) -> int | None:
    return None if lifetime is None else int(lifetime.total_seconds())


def _device_or_404(device_id: int) -> Device:
    device = visible_device(db_session(), current_principal(), device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}")
    return device


@blp.route("/devices", methods=["GET"])
@blp.arguments(DeviceQuerySchema, location="query", as_kwargs=True)
@blp.response(200, DevicePageSchema)
@permission(Permission.DEVICE_READ)
def list_devices(**filters: Any) -> Any:
    """List devices (filters: unit subtree, platform, status, compliance, last seen, text)."""
    return search_devices(db_session(), current_principal(), filters).as_dict()


@blp.route(f"/devices/<{ID}:device_id>", methods=["GET"])
@blp.response(200, DeviceDetailSchema)
@permission(Permission.DEVICE_READ)
def get_device(device_id: int) -> Any:
    """One device: identity, unit, enrollment and push state, pending commands."""
    return _device_or_404(device_id)


@blp.route(f"/devices/<{ID}:device_id>/out-of-service", methods=["POST"])
@blp.arguments(OutOfServiceSchema)
@blp.response(200, DeviceDetailSchema)
@permission(Permission.DEVICE_WRITE)
def out_of_service(body: dict[str, Any], device_id: int) -> Any:
    """Take an enrolled Android record out of service (tablet reset without a wipe, agent lost):
    its certificates are revoked, it becomes `unenrolled`, and the tablet may enroll again as a
    new record. Resolves a `serial_conflict` alert. Audited with the reason."""
    principal = current_principal()
    device = _device_or_404(device_id)
    session = db_session()
    try:
        take_out_of_service(session, device, actor=principal.actor, reason=body["reason"])
    except OutOfServiceRefused as exc:
        raise ApiError(exc.status, str(exc), fields={exc.field: [str(exc)]}) from exc
    session.commit()
    return device


@blp.route(f"/devices/<{ID}:device_id>/commands", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query", as_kwargs=True)
@blp.response(200, CommandPageSchema)
@permission(Permission.COMMAND_READ)
def list_device_commands(device_id: int, **page: Any) -> Any:
    """The device's command history, newest first."""
    device = _device_or_404(device_id)
    return search_commands(db_session(), current_principal(), {**page, "device_id": device.id}).as_dict()


@blp.route(f"/devices/<{ID}:device_id>/foreign-results", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query", as_kwargs=True)
@blp.response(200, ForeignCommandResultPageSchema)
@permission(Permission.COMMAND_READ)
def list_device_foreign_results(device_id: int, page: int, per_page: int) -> Any:
    """Answers to commands Hikeshi did not queue (sent by another MDM before migration), newest first."""
    device = _device_or_404(device_id)
    return search_foreign_results(db_session(), device, page, per_page).as_dict()


def check_may_send(principal: Principal, request_type: str) -> None:
    """400 for an unknown type; 403 for a type the principal may not send (erase: never here)."""
    try:
        kind = get_command_type(request_type)
    except UnknownCommand as exc:
        raise field_error("request_type", str(exc)) from exc
    try:
        refuse_direct(kind)
    except TwoPersonCommand as exc:
        raise ApiError(
            403,
            str(exc),
            code="two_person_rule",
            fields={"request_type": ["needs the wipe approval workflow"]},
        ) from exc
    if not may_send(principal, kind):
        raise ApiError(403, f"the role {principal.role} may not send {request_type}")


@blp.route(f"/devices/<{ID}:device_id>/commands", methods=["POST"])
@blp.arguments(CommandQueueSchema)
@blp.response(201, CommandSchema)
@permission(Permission.COMMAND_QUEUE_HOTLINE)
def queue_command(body: dict[str, Any], device_id: int) -> Any:
    """Queue a command for the device and push it. Lock and lost mode jump the queue."""
    principal = current_principal()
    device = _device_or_404(device_id)
    check_may_send(principal, body["request_type"])
    session = db_session()
    try:
        command = enqueue_command(
            session,
            device,
            body["request_type"],
            body["params"],
            actor=principal.actor,
            context=command_context(),
        )
    except CommandParamsError as exc:
        raise ApiError(400, str(exc), fields={"params": exc.fields}) from exc
    except CommandRefused as exc:
        status = 409 if exc.field == "device" else 400
        raise ApiError(status, exc.bilingual, code=exc.code, fields={exc.field: [exc.bilingual]}) from exc
    session.commit()
    return command


@blp.route("/commands", methods=["GET"])
@blp.arguments(CommandQuerySchema, location="query", as_kwargs=True)
@blp.response(200, CommandPageSchema)
@permission(Permission.COMMAND_READ)
def list_commands(**filters: Any) -> Any:
    """Commands of every visible device, newest first."""
    return search_commands(db_session(), current_principal(), filters).as_dict()


def _command_or_404(command_uuid: str) -> Any:
    command = visible_command(db_session(), current_principal(), command_uuid)
    if command is None:
        raise ApiError(404, f"no command {command_uuid}")
    return command


@blp.route("/commands/<public_id:command_uuid>", methods=["GET"])
@blp.response(200, CommandSchema)
@permission(Permission.COMMAND_READ)
def get_command(command_uuid: str) -> Any:
    """One command and its state."""
    return _command_or_404(command_uuid)


@blp.route("/commands/<public_id:command_uuid>/cancel", methods=["POST"])
@blp.response(200, CommandSchema)
@permission(Permission.COMMAND_CANCEL)
def cancel(command_uuid: str) -> Any:
    """Cancel a command the device has not fetched yet."""
    principal = current_principal()
    command = _command_or_404(command_uuid)
    if not (principal.can(Permission.COMMAND_QUEUE) or may_send_named(principal, command.request_type)):
        raise ApiError(403, f"the role {principal.role} may not cancel {command.request_type}")
    session = db_session()
    try:
        cancel_command(session, command, actor=principal.actor)
    except CommandStateError as exc:
        raise ApiError(409, str(exc)) from exc
    session.commit()
    return command


@blp.route("/command-types", methods=["GET"])
@blp.response(200, CommandTypeSchema(many=True))
@permission(Permission.COMMAND_READ)
def command_types() -> Any:
    """The command catalog, with whether the caller may queue each type."""
    principal = current_principal()
    configured = command_context().command_expiry
    return [
        {
            "request_type": kind.request_type,
            "description_ja": kind.description_ja,
            "description_en": kind.description_en,
            "priority": kind.priority,
            "platforms": list(kind.platforms),
            "requires_supervision": kind.requires_supervision,
            "expires_after_seconds": _seconds(kind.lifetime(configured)),
            "allowed": may_send(principal, kind),
        }
        for kind in all_command_types()
    ]
