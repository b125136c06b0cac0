"""Loading in bulk what readiness is computed from: the org tree, plans, the tablets of the units
asked about, the spares of every station, and the facts the working rules need."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from mdm.ground.models import (
    ComplianceFinding,
    Device,
    DeviceProfileState,
    Incident,
    IncidentStatus,
    OrgUnit,
    OrgUnitKind,
    SpareDevice,
)
from mdm.ground.models import DeviceFacts as DeviceFactsRow
from mdm.services.continuity.plans import Plan, plans_for
from mdm.services.continuity.working import DeviceFacts

# Where a spare may sit to belong to a station's pool (a 隊 holds tablets, not spares).
POOL_KINDS = (OrgUnitKind.HQ, OrgUnitKind.STATION, OrgUnitKind.BRANCH)


@dataclass
class World:
    units: dict[int, OrgUnit]
    targets: list[OrgUnit]
    plans: dict[int, Plan]
    # unit id → facts of the tablets in it
    tablets: dict[int, list[DeviceFacts]] = field(default_factory=dict)
    # pool (station, or the HQ for units directly under it) → facts of its spares
    spares: dict[int, list[DeviceFacts]] = field(default_factory=dict)
    # device id → unit it was swapped into and has not yet checked in working there
    incoming: dict[int, int] = field(default_factory=dict)
    spare_device_ids: set[int] = field(default_factory=set)

    def pool_of(self, unit_id: int | None) -> int | None:
        """The station whose spares a node can draw on: its nearest 消防署, else its 消防本部."""
        seen: set[int] = set()
        current = unit_id
        root = None
        while current is not None and current not in seen:
            seen.add(current)
            node = self.units.get(current)
            if node is None:
                break
            if node.kind == OrgUnitKind.STATION:
                return node.id
            root = node.id
            current = node.parent_id
        return root

    def station_name(self, pool_id: int | None) -> tuple[str, str]:
        node = self.units.get(pool_id) if pool_id is not None else None
        if node is None:
            return ("所属署なし", "no station")
        return (node.name_ja, node.name_en or node.name_ja)


def load_world(session: Session, unit_ids: set[int] | None = None) -> World:
    """Everything needed to compute the readiness of `unit_ids` (None: every unit).

    Which devices are asked about is said in SQL (a subquery over the units and the spares),
    never as a list of device ids: a prefecture's fleet passes any driver's parameter limit
    (65,535 on PostgreSQL), and each query here is one round trip whatever the fleet's size."""
    nodes = select(OrgUnit)
    if unit_ids is not None:
        # The stations, branches and HQs (spare pools, a few hundred) and the units asked about:
        # not a prefecture's 14,000 units to read spares or one page of readiness (5 s).
        nodes = nodes.where(or_(OrgUnit.kind != OrgUnitKind.UNIT, OrgUnit.id.in_(sorted(unit_ids))))
    units = {u.id: u for u in session.scalars(nodes)}
    targets = sorted(
        (u for u in units.values() if u.kind == OrgUnitKind.UNIT and (unit_ids is None or u.id in unit_ids)),
        key=lambda u: u.id,
    )
    world = World(units, targets, plans_for(session, targets))
    target_units = select(OrgUnit.id).where(OrgUnit.kind == OrgUnitKind.UNIT)
    if unit_ids is not None:
        target_units = target_units.where(OrgUnit.id.in_(sorted(unit_ids)))
    in_targets = Device.org_unit_id.in_(target_units.scalar_subquery())
    devices = list(session.execute(_DEVICE_COLUMNS.where(in_targets).order_by(Device.id))) if targets else []
    spare_rows = list(
        session.execute(
            select(SpareDevice.swapped_to_unit_id, SpareDevice.swapped_at, *_DEVICE_COLUMNS.selected_columns)
            .join(Device, Device.id == SpareDevice.device_id)
            .order_by(Device.id)
        )
    )
    everyone: dict[int, Any] = {d.id: d for d in devices}
    swapped: dict[int, datetime] = {}
    for row in spare_rows:
        everyone[row.id] = row
        world.spare_device_ids.add(row.id)
        if row.swapped_to_unit_id is not None:
            world.incoming[row.id] = row.swapped_to_unit_id
            if row.org_unit_id == row.swapped_to_unit_id and row.swapped_at is not None:
                swapped[row.id] = row.swapped_at
    asked = select(Device.id).where(in_targets) if targets else None
    facts = _facts(session, list(everyone.values()), asked, swapped)
    for device in devices:
        world.tablets.setdefault(device.org_unit_id or 0, []).append(facts[device.id])
    for row in spare_rows:
        home = units.get(row.org_unit_id) if row.org_unit_id is not None else None
        if row.swapped_to_unit_id is None and home is not None and home.kind in POOL_KINDS:
            pool = world.pool_of(home.id)
            if pool is not None:
                world.spares.setdefault(pool, []).append(facts[row.id])
    return world


# Only the columns the rules read: a fleet's Device objects would hold hundreds of MB in a session.
_DEVICE_COLUMNS = select(
    Device.id,
    Device.org_unit_id,
    Device.device_name,
    Device.serial_number,
    Device.udid,
    Device.enrollment_state,
    Device.last_seen_at,
)


def _unverified_profiles(session: Session, swapped: dict[int, datetime]) -> dict[int, int]:
    """Per swapped-in spare: its desired profiles not shown installed at their desired version by
    a ProfileList answered after the swap (an acknowledged install alone is not proof enough)."""
    if not swapped:
        return {}
    count: dict[int, int] = {}
    for device_id, desired, installed, verified in session.execute(
        select(
            DeviceProfileState.device_id,
            DeviceProfileState.desired_version,
            DeviceProfileState.installed_version,
            DeviceProfileState.last_verified_at,
        ).where(
            DeviceProfileState.device_id.in_(
                select(SpareDevice.device_id).where(SpareDevice.swapped_to_unit_id.is_not(None))
            ),
            DeviceProfileState.profile_id.is_not(None),
            DeviceProfileState.desired_version.is_not(None),
        )
    ):
        if device_id not in swapped:
            continue  # swapped but not in its unit yet: _spare_arrival does not look at profiles
        if installed != desired or verified is None or verified <= swapped[device_id]:
            count[device_id] = count.get(device_id, 0) + 1
    return count


def _facts(
    session: Session,
    devices: list[Any],
    asked: Select[Any] | None,
    swapped: dict[int, datetime] | None = None,
) -> dict[int, DeviceFacts]:
    """The facts of `devices`: the tablets `asked` selects, and every spare."""
    swapped = swapped or {}
    unverified = _unverified_profiles(session, swapped)
    incidents: dict[int, tuple[int, str]] = {}
    findings: dict[int, list[tuple[str, str]]] = {}
    battery: dict[int, float | None] = {}
    if devices:
        spares = select(SpareDevice.device_id)
        wanted = spares if asked is None else asked.union(spares)
        for device_id, incident_id, kind in session.execute(
            select(Incident.device_id, Incident.id, Incident.kind)
            .where(Incident.device_id.in_(wanted), Incident.status.in_(IncidentStatus.ACTIVE))
            .order_by(Incident.id)
        ):
            incidents[device_id] = (incident_id, kind)
        for device_id, rule, severity in session.execute(
            select(ComplianceFinding.device_id, ComplianceFinding.rule, ComplianceFinding.severity).where(
                ComplianceFinding.device_id.in_(wanted), ComplianceFinding.closed_at.is_(None)
            )
        ):
            findings.setdefault(device_id, []).append((rule, severity))
        battery = dict(
            session.execute(
                select(DeviceFactsRow.device_id, DeviceFactsRow.battery_level).where(
                    DeviceFactsRow.device_id.in_(wanted), DeviceFactsRow.battery_level.is_not(None)
                )
            ).all()
        )
    out = {}
    for d in devices:
        incident = incidents.get(d.id)
        out[d.id] = DeviceFacts(
            device_id=d.id,
            name=d.device_name or d.serial_number or d.udid or f"#{d.id}",
            serial_number=d.serial_number,
            enrollment_state=d.enrollment_state,
            last_seen_at=d.last_seen_at,
            battery_level=battery.get(d.id),
            incident_id=incident[0] if incident else None,
            incident_kind=incident[1] if incident else None,
            findings=tuple(sorted(findings.get(d.id, []))),
            swapped_at=swapped.get(d.id),
            profiles_unverified=unverified.get(d.id, 0),
        )
    return out
