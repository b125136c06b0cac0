"""Per device: what it reported (facts, apps, profiles, certificates), what changed, its
compliance findings, and an on-demand inventory refresh; across the fleet: the apps report."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from commands.inventory_refresh import INVENTORY_KINDS, queue_inventory_refresh
from commands.queue import CommandRefused
from mdm.doors.appctx import command_context, db_session
from mdm.ground.models import Device, DeviceFacts, InstalledCertificate, InstalledProfile
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.api.inventory_schemas import (
    AppReportPageSchema,
    AppReportQuerySchema,
    DeviceFactsSchema,
    FindingQuerySchema,
    FindingSchema,
    HistoryQuerySchema,
    InstalledAppSchema,
    InstalledCertificateSchema,
    InstalledProfileSchema,
    InventoryChangePageSchema,
    RefreshResultSchema,
)
from web.errors import ApiError
from web.queries import apps_report, device_apps, device_changes, device_findings, visible_device
from web.rbac import Permission, may_send_named

blp = ApiBlueprint(
    "inventory", __name__, url_prefix="/api/v1", description="Inventory, compliance findings, apps report"
)


def _device_or_404(device_id: int) -> Device:
    device = visible_device(db_session(), current_principal(), device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}")
    return device


@blp.route(f"/devices/<{ID}:device_id>/facts", methods=["GET"])
@blp.response(200, DeviceFactsSchema)
@permission(Permission.DEVICE_READ)
def device_facts(device_id: int) -> Any:
    """The device's latest DeviceInformation and SecurityInfo answers (all null until reported)."""
    device = _device_or_404(device_id)
    facts = db_session().get(DeviceFacts, device.id)
    if facts is None:
        # Not reported yet: the same shape, every value unknown.
        empty = {"device_id": device.id, "raw_device_information": {}, "raw_security_info": {}}
        return empty | {name: None for name in DeviceFactsSchema().fields if name not in empty}
    return facts


@blp.route(f"/devices/<{ID}:device_id>/apps", methods=["GET"])
@blp.response(200, InstalledAppSchema(many=True))
@permission(Permission.DEVICE_READ)
def device_installed_apps(device_id: int) -> Any:
    """Installed apps, the ones the device's app policy does not permit marked `unauthorized`."""
    return device_apps(db_session(), _device_or_404(device_id))


@blp.route(f"/devices/<{ID}:device_id>/installed-profiles", methods=["GET"])
@blp.response(200, InstalledProfileSchema(many=True))
@permission(Permission.DEVICE_READ)
def device_installed_profiles(device_id: int) -> Any:
    """Configuration profiles installed on the device (its last ProfileList)."""
    device = _device_or_404(device_id)
    return db_session().scalars(
        select(InstalledProfile)
        .where(InstalledProfile.device_id == device.id)
        .order_by(InstalledProfile.identifier)
    )


@blp.route(f"/devices/<{ID}:device_id>/certificates", methods=["GET"])
@blp.response(200, InstalledCertificateSchema(many=True))
@permission(Permission.DEVICE_READ)
def device_installed_certificates(device_id: int) -> Any:
    """Certificates installed on the device (its last CertificateList), soonest expiry first."""
    device = _device_or_404(device_id)
    return db_session().scalars(
        select(InstalledCertificate)
        .where(InstalledCertificate.device_id == device.id)
        .order_by(InstalledCertificate.not_after.is_(None), InstalledCertificate.not_after)
    )


@blp.route(f"/devices/<{ID}:device_id>/history", methods=["GET"])
@blp.arguments(HistoryQuerySchema, location="query", as_kwargs=True)
@blp.response(200, InventoryChangePageSchema)
@permission(Permission.DEVICE_READ)
def device_history(device_id: int, **filters: Any) -> Any:
    """What changed on the device (OS upgraded, app installed or removed, battery low), newest first."""
    device = _device_or_404(device_id)
    return device_changes(db_session(), device.id, filters).as_dict()


@blp.route(f"/devices/<{ID}:device_id>/findings", methods=["GET"])
@blp.arguments(FindingQuerySchema, location="query", as_kwargs=True)
@blp.response(200, FindingSchema(many=True))
@permission(Permission.DEVICE_READ)
def device_compliance_findings(device_id: int, state: str) -> Any:
    """Compliance findings: open ones first, then closed ones (each episode is its own row)."""
    device = _device_or_404(device_id)
    return device_findings(db_session(), device.id, state)


@blp.route(f"/devices/<{ID}:device_id>/inventory/refresh", methods=["POST"])
@blp.response(200, RefreshResultSchema)
@permission(Permission.COMMAND_QUEUE)
def refresh_inventory(device_id: int) -> Any:
    """Queue a full inventory refresh now. A kind the device has not fetched yet is reused, never
    doubled, so calling this again for an offline device queues nothing new."""
    principal = current_principal()
    device = _device_or_404(device_id)
    if not all(may_send_named(principal, kind) for kind in INVENTORY_KINDS):
        raise ApiError(403, f"the role {principal.role} may not queue inventory commands")
    session = db_session()
    try:
        commands = queue_inventory_refresh(session, device, principal.actor, context=command_context())
    except CommandRefused as exc:
        session.rollback()
        raise ApiError(409, str(exc), fields={"device": [str(exc)]}) from exc
    session.commit()
    return {"commands": commands}


@blp.route("/apps", methods=["GET"])
@blp.arguments(AppReportQuerySchema, location="query", as_kwargs=True)
@blp.response(200, AppReportPageSchema)
@permission(Permission.DEVICE_READ)
def apps(**filters: Any) -> Any:
    """Every app on the devices the caller sees, with device counts and how many are unauthorized."""
    # A unit outside the caller's scope simply matches no visible device.
    return apps_report(db_session(), current_principal(), filters).as_dict()
