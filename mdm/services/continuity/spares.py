"""Spare tablets: kept at a station (or one of its branches), handed to a unit in one action.

A swap moves the tablet into the unit through `mdm.services.orgunits.assign_device` (its profiles follow
through that function's hooks), so it is no longer a spare. Until it has checked in after the
swap and a ProfileList shows it holding the unit's profiles at their current version (one is
queued with the swap, behind the installs), the unit counts it as help on its way (degraded, not
critical), and readiness recovers on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.context import NO_CONTEXT, CommandContext
from commands.incidents.service import record_step
from commands.queue import enqueue_command
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Device, Incident, OrgUnit, OrgUnitKind, SpareDevice
from mdm.services.continuity.readiness import note_cause
from mdm.services.continuity.working import DeviceFacts, is_available_spare
from mdm.services.continuity.world import POOL_KINDS, World, load_world
from mdm.services.orgunits import assign_device


class SpareError(ValueError):
    """A refused spare action; `field` names the input at fault."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Spare:
    device_id: int
    name: str
    serial_number: str | None
    org_unit_id: int | None
    available: bool
    # Why an unavailable spare cannot be handed out (lost, not enrolled).
    problem_ja: str | None = None
    problem_en: str | None = None


@dataclass
class StationSpares:
    station_id: int
    name_ja: str
    name_en: str
    spares: list[Spare] = field(default_factory=list)

    @property
    def available(self) -> int:
        return sum(1 for s in self.spares if s.available)


@dataclass(frozen=True)
class SwapOutcome:
    device: Device
    unit: OrgUnit
    from_org_unit_id: int | None
    incident_id: int | None
    recorded_on_incident: bool


def _problem(facts: DeviceFacts) -> tuple[str | None, str | None]:
    if facts.incident_id is not None:
        return (
            f"紛失・盗難届あり (インシデント {facts.incident_id})",
            f"reported lost (incident {facts.incident_id})",
        )
    if not is_available_spare(facts):
        return (f"未登録 ({facts.enrollment_state})", f"not enrolled ({facts.enrollment_state})")
    return (None, None)


def spares_by_station(
    session: Session, principal_scope: set[int] | frozenset[int] | None = None, *, world: World | None = None
) -> list[StationSpares]:
    """Every station (and an HQ holding spares itself) with its spare tablets; `world`: the
    tree and spares already loaded (load_world(session, set())), for a page that reads them twice."""
    world = world if world is not None else load_world(session, set())
    out: dict[int, StationSpares] = {}
    for unit in world.units.values():
        if unit.kind == OrgUnitKind.STATION:
            out[unit.id] = StationSpares(unit.id, unit.name_ja, unit.name_en or unit.name_ja)
    org_of: dict[int, int | None] = {}
    if world.spare_device_ids:
        rows = session.execute(
            select(Device.id, Device.org_unit_id).join(SpareDevice, SpareDevice.device_id == Device.id)
        ).all()
        org_of = {device_id: org_unit_id for device_id, org_unit_id in rows}
    for pool, spares in world.spares.items():
        if pool not in out:
            name_ja, name_en = world.station_name(pool)
            out[pool] = StationSpares(pool, name_ja, name_en)
        for facts in spares:
            problem_ja, problem_en = _problem(facts)
            out[pool].spares.append(
                Spare(
                    facts.device_id,
                    facts.name,
                    facts.serial_number,
                    org_of.get(facts.device_id),
                    problem_ja is None,
                    problem_ja,
                    problem_en,
                )
            )
    result = sorted(out.values(), key=lambda s: s.station_id)
    if principal_scope is not None:
        result = [s for s in result if s.station_id in principal_scope]
    return result


def mark_spare(session: Session, device: Device, *, actor: Actor, note: str = "") -> SpareDevice:
    """Keep `device` as a spare of the station (or branch) it is assigned to."""
    home = session.get(OrgUnit, device.org_unit_id) if device.org_unit_id is not None else None
    if home is None or home.kind not in POOL_KINDS:
        raise SpareError(
            "device_id",
            "a spare must be assigned to a station or branch (消防署・出張所), not to a unit or nowhere",
        )
    if len(note) > 255:
        raise SpareError("note", "at most 255 characters")
    row = session.scalars(select(SpareDevice).where(SpareDevice.device_id == device.id)).first()
    if row is not None and row.swapped_to_unit_id is None:
        return row
    if row is None:
        row = SpareDevice(device_id=device.id)
        session.add(row)
    row.marked_by = actor.name
    row.marked_at = clock.now()
    row.note = note.strip()
    row.swapped_to_unit_id = None
    row.swapped_at = None
    row.swap_incident_id = None
    session.flush()
    record_event(
        session,
        actor,
        "continuity.spare_marked",
        "device",
        device.id,
        {"org_unit_id": home.id, "note": row.note},
    )
    return row


def unmark_spare(session: Session, device: Device, *, actor: Actor) -> bool:
    """The tablet is no longer kept as a spare; False when it was not one."""
    row = session.scalars(select(SpareDevice).where(SpareDevice.device_id == device.id)).first()
    if row is None:
        return False
    session.delete(row)
    session.flush()
    record_event(session, actor, "continuity.spare_unmarked", "device", device.id, {})
    return True


def swap_spare(
    session: Session,
    spare: Device,
    unit: OrgUnit,
    *,
    actor: Actor,
    incident: Incident | None = None,
    context: CommandContext = NO_CONTEXT,
) -> SwapOutcome:
    """Hand a spare to `unit` (optionally as the answer to an incident); never commits."""
    row = session.scalars(select(SpareDevice).where(SpareDevice.device_id == spare.id)).first()
    if row is None or row.swapped_to_unit_id is not None:
        raise SpareError("spare_device_id", f"device {spare.id} is not a spare")
    if unit.kind != OrgUnitKind.UNIT:
        raise SpareError("unit_id", f"a spare goes to a unit (隊), not to a {unit.kind}")
    world = load_world(session, {unit.id})
    facts = next((f for pool in world.spares.values() for f in pool if f.device_id == spare.id), None)
    if facts is None:
        raise SpareError("spare_device_id", f"device {spare.id} is not kept at a station or branch")
    _problem_ja, problem_en = _problem(facts)
    if problem_en is not None:
        raise SpareError("spare_device_id", f"this spare cannot be handed out: {problem_en}", 409)
    if incident is not None and incident.device_id == spare.id:
        raise SpareError("incident_id", "the incident is about this spare itself")
    from_unit = spare.org_unit_id
    assign_device(session, spare, unit, actor=actor)  # the moved-device hooks have their own context
    if spare.platform == "apple":
        # Behind the unit's profile installs (they go first), so the answer verifies them.
        enqueue_command(session, spare, "ProfileList", None, actor=actor, context=context)
    now = clock.now()
    row.swapped_to_unit_id = unit.id
    row.swapped_at = now
    row.swap_incident_id = incident.id if incident is not None else None
    details: dict[str, Any] = {
        "spare_device_id": spare.id,
        "from_org_unit_id": from_unit,
        "to_org_unit_id": unit.id,
        "incident_id": incident.id if incident is not None else None,
        "serial_number": spare.serial_number,
    }
    record_event(session, actor, "continuity.spare_swapped", "device", spare.id, details)
    recorded = _record_on_incident(session, incident, actor, details)
    name = spare.device_name or spare.serial_number or f"#{spare.id}"
    suffix_ja = f" (インシデント {incident.id})" if incident is not None else ""
    suffix_en = f" (incident {incident.id})" if incident is not None else ""
    note_cause(
        session,
        unit.id,
        "spare_swapped",
        f"予備機 {name} を配置{suffix_ja}",
        f"spare {name} swapped in{suffix_en}",
    )
    session.flush()
    return SwapOutcome(spare, unit, from_unit, incident.id if incident is not None else None, recorded)


def _record_on_incident(
    session: Session, incident: Incident | None, actor: Actor, details: dict[str, Any]
) -> bool:
    """The swap as the step after "lock now" on the hotline incident's timeline."""
    if incident is None:
        return False
    record_step(session, incident, actor, "spare_swapped", details)
    return True
