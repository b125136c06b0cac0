"""Read side of the hotline: find a device while the caller is on the phone, list incidents, and
one incident as the API and the hotline page show it (plain dicts, datetimes left as datetimes)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.orm import Session

from commands.incidents.finder_screen import finder_screen
from commands.incidents.lock_state import LockView, lock_view
from commands.incidents.service import LOCK_PURPOSE
from commands.incidents.timeline import incident_commands, incident_timeline, push_attempts, wipe_progress
from commands.wipe_certificate import certificate_for_incident
from mdm.ground.models import Device, OrgUnit
from mdm.ground.models.incident import Incident, IncidentStatus
from mdm.services import orgunits
from mdm.services.device_search import (
    exact_match,
    like_pattern,
    most_recently_seen,
    substring_match,
    units_named,
)

MAP_URL = "https://maps.google.com/?q={lat},{lon}"


def map_url(latitude: float, longitude: float) -> str:
    """A plain link to the coordinates (no map tiles are loaded by the console)."""
    return MAP_URL.format(lat=f"{latitude:.6f}", lon=f"{longitude:.6f}")


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _in_scope(column: Any, unit_ids: Collection[int] | None) -> ColumnElement[bool]:
    return true() if unit_ids is None else column.in_(sorted(unit_ids))


@dataclass(frozen=True)
class DeviceHit:
    device: Device
    unit_path: str | None
    incident: Incident | None  # the device's active incident, if a call is already open


def find_devices(
    session: Session, text: str, *, unit_ids: Collection[int] | None, limit: int = 20
) -> list[DeviceHit]:
    """Devices matching what the caller says: asset tag, user, serial, UDID, device name, model, or
    unit name/code.

    `unit_ids` limits the search to a principal's subtree (None: everything).
    """
    text = text.strip()
    if not text:
        return []
    scope = _in_scope(Device.org_unit_id, unit_ids)
    # An exact asset tag (資産番号), serial, user or UDID first: indexed, and what a caller
    # reading the tag on the case says; then the most recently seen tablets containing the text.
    wanted = text.lower()
    exact = sorted(
        session.scalars(
            select(Device).where(scope, exact_match(text)).order_by(*most_recently_seen()).limit(limit)
        ),
        key=lambda d: ((d.asset_tag or "").lower() != wanted, (d.serial_number or "").lower() != wanted),
    )
    devices = list(exact)
    # Then tablets whose own labels contain the text (trigram indexes), and only when nothing
    # matched exactly, tablets of units whose name or code contains it: separate queries, each
    # on its own indexes (one OR across both made PostgreSQL read the whole fleet, 190 ms at
    # 100,000 devices), and a tablet named by its own label before one named by its unit.
    if len(devices) < limit:
        devices += _more(session, select(Device).where(scope, substring_match(text)), devices, limit)
    if not exact and len(devices) < limit:
        in_units = _in_units_named(session, text)
        if in_units is not None:
            devices += _more(session, select(Device).where(scope, in_units), devices, limit)
    active = _active_incidents(session, [d.id for d in devices])
    # Every hit's unit path in one query, not two per hit.
    paths = orgunits.path_labels(session, {d.org_unit_id for d in devices if d.org_unit_id is not None})
    return [
        DeviceHit(d, paths.get(d.org_unit_id) if d.org_unit_id else None, active.get(d.id)) for d in devices
    ]


def _more(session: Session, stmt: Any, found: list[Device], limit: int) -> list[Device]:
    """The most recently seen of `stmt` not in `found`, up to `limit` hits in all."""
    if found:
        stmt = stmt.where(Device.id.not_in([d.id for d in found]))
    return list(session.scalars(stmt.order_by(*most_recently_seen()).limit(limit - len(found))))


# Units whose name holds the text: enough to find a caller's unit, few enough for an IN list.
UNITS_NAMED_LIMIT = 50


def _in_units_named(session: Session, text: str) -> ColumnElement[bool] | None:
    """Devices of the units whose name or code contains `text`; None when no unit does. The ids
    are read first: as a subquery, PostgreSQL guessed hundreds of units and walked the whole
    fleet in recency order looking for their tablets (560 ms at 100,000 devices)."""
    named = units_named(like_pattern(text)).order_by(OrgUnit.id).limit(UNITS_NAMED_LIMIT)
    ids = list(session.scalars(named))
    return Device.org_unit_id.in_(ids) if ids else None


def _active_incidents(session: Session, device_ids: list[int]) -> dict[int, Incident]:
    if not device_ids:
        return {}
    found: dict[int, Incident] = {}
    for incident in session.scalars(
        select(Incident)
        .where(Incident.device_id.in_(device_ids), Incident.status.in_(IncidentStatus.ACTIVE))
        .order_by(Incident.id)
    ):
        found[incident.device_id] = incident
    return found


@dataclass(frozen=True)
class IncidentPage:
    items: list[Incident]
    page: int
    per_page: int
    total: int


def search_incidents(
    session: Session,
    *,
    unit_ids: Collection[int] | None,
    status: str | None = None,
    active: bool | None = None,
    device_id: int | None = None,
    text: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> IncidentPage:
    """Incidents, newest first; `text` matches the caller, the place and the device."""
    stmt = (
        select(Incident)
        .join(Device, Incident.device_id == Device.id)
        .where(or_(_in_scope(Incident.org_unit_id, unit_ids), _in_scope(Device.org_unit_id, unit_ids)))
    )
    if status:
        stmt = stmt.where(Incident.status == status)
    if active is True:
        stmt = stmt.where(Incident.status.in_(IncidentStatus.ACTIVE))
    elif active is False:
        stmt = stmt.where(Incident.status.not_in(IncidentStatus.ACTIVE))
    if device_id is not None:
        stmt = stmt.where(Incident.device_id == device_id)
    if text:
        pattern = _like(text.strip())
        columns = (
            Incident.caller_name,
            Incident.caller_unit,
            Incident.lost_place,
            Incident.operator,
            Device.asset_tag,
            Device.assigned_user,
            Device.serial_number,
            Device.device_name,
        )
        stmt = stmt.where(or_(*(column.ilike(pattern, escape="\\") for column in columns)))
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = session.scalars(
        stmt.order_by(Incident.opened_at.desc(), Incident.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return IncidentPage(list(items), page, per_page, total)


def visible_to(incident: Incident, unit_ids: Collection[int] | None) -> bool:
    """In scope when the incident's unit at the call, or the device's unit now, is in the subtree."""
    if unit_ids is None:
        return True
    return incident.org_unit_id in unit_ids or incident.device.org_unit_id in unit_ids


def incident_lock(incident: Incident) -> LockView:
    """The state of the incident's newest lock command (lock now may be pressed again)."""
    locks = [link.command for link in incident.commands if link.purpose == LOCK_PURPOSE]
    return lock_view(max(locks, key=lambda c: c.id) if locks else None)


def incident_summary(incident: Incident) -> dict[str, Any]:
    device = incident.device
    ja, en = IncidentStatus.LABELS[incident.status]
    return {
        "id": incident.id,
        "status": incident.status,
        "status_label_ja": ja,
        "status_label_en": en,
        "kind": incident.kind,
        "device_id": device.id,
        "device_name": device.device_name,
        "serial_number": device.serial_number,
        "org_unit_id": incident.org_unit_id,
        "caller_name": incident.caller_name,
        "caller_unit": incident.caller_unit,
        "operator": incident.operator,
        "opened_at": incident.opened_at,
        "wipe_progress": wipe_progress(incident),
        "lock": incident_lock(incident).as_dict(),
    }


def _location(latitude: float, longitude: float, accuracy: float | None, at: Any) -> dict[str, Any]:
    return {
        "latitude": latitude,
        "longitude": longitude,
        "accuracy": accuracy,
        "located_at": at,
        "map_url": map_url(latitude, longitude),
    }


def incident_detail(session: Session, incident: Incident) -> dict[str, Any]:
    """Everything the hotline page shows, read fresh from the database."""
    certificate = certificate_for_incident(session, incident)
    unit = session.get(OrgUnit, incident.org_unit_id) if incident.org_unit_id else None
    latest = None
    if incident.latitude is not None and incident.longitude is not None:
        latest = _location(
            incident.latitude, incident.longitude, incident.location_accuracy, incident.located_at
        )
    return {
        **incident_summary(incident),
        "device": incident.device,
        "org_unit_path": orgunits.path_label(session, unit) if unit is not None else None,
        "callback_number": incident.callback_number,
        "lost_at": incident.lost_at,
        "lost_place": incident.lost_place,
        "notes": incident.notes,
        "locked_at": incident.locked_at,
        "lost_mode": incident.lost_mode,
        "wipe_requested_by": incident.wipe_requested_by,
        "wipe_requested_at": incident.wipe_requested_at,
        "wipe_request_reason": incident.wipe_request_reason,
        "wipe_approved_by": incident.wipe_approved_by,
        "wipe_approved_at": incident.wipe_approved_at,
        "break_glass": incident.break_glass,
        "break_glass_reason": incident.break_glass_reason,
        "wiped_at": incident.wiped_at,
        "recovered_by": incident.recovered_by,
        "recovered_at": incident.recovered_at,
        "closed_at": incident.closed_at,
        "location": latest,
        "locations": [
            _location(fix.latitude, fix.longitude, fix.horizontal_accuracy, fix.located_at)
            for fix in incident.locations
        ],
        "commands": [vars(view) for view in incident_commands(incident)],
        "push_attempts": [
            {
                "attempted_at": a.attempted_at,
                "attempt": a.attempt,
                "status_code": a.status_code,
                "reason": a.reason,
                "accepted": a.status_code == 200,
            }
            for a in push_attempts(session, incident)
        ],
        "timeline": [vars(entry) for entry in incident_timeline(session, incident)],
        "finder": finder_screen(incident).as_dict(),
        "certificate": None
        if certificate is None
        else {
            "issued_at": certificate.issued_at,
            "signed": certificate.signature is not None,
            "signer_fingerprint": certificate.signer_fingerprint,
        },
    }
