"""Readiness follows every device change without each service calling it.

Listeners on the application's sessions, attached by mdm.roots.wiring: `collect_changes` notes,
after each flush, which units a change may affect (enrollment, check-in, compliance, battery,
incident opened or closed, device moved, retired, spares, plans, the org tree). Just before the
transaction commits (`ask_before_commit`), those devices and units are written to the outbox
with it, and right after the commit the drain (mdm.ground.outbox_drain) recomputes only those
units (`recompute_claimed`), in the transaction that deletes the rows: a change never commits
without its recompute being owed, the recompute is done once, and a device's request does not
pay for it (a readiness stream or webhook still hears of it well within a second). If the
recompute fails, the device's own change is committed already (a command is never lost to a
readiness bug); the rows are retried, and the scheduled recompute catches up. A person's change
that states its cause (a spare swap, `readiness.note_cause`) is recomputed in its own transaction,
where the cause is known.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import (
    ComplianceFinding,
    ContinuityPlan,
    Device,
    DeviceCompliance,
    DeviceFacts,
    DeviceProfileState,
    Incident,
    OrgUnit,
    OrgUnitKind,
    OutboxTopic,
    ReadinessDelivery,
    ReadinessEvent,
    SpareDevice,
    UnitReadinessState,
)
from mdm.ground.push import outbox
from mdm.services.continuity.plans import MIN_SEEN_MINUTES
from mdm.services.continuity.readiness import CAUSES_KEY, recompute_in_parts
from mdm.services.devices import read_as_no_swapped_spare

PENDING_KEY = "hikeshi.readiness.pending"
BUSY_KEY = "hikeshi.readiness.busy"
# Set on a session whose transaction asks for its devices' units, looked up before the commit,
# rather than for the devices: a fleet job's page, whose units several pages share. Asked as
# units, the rows of every page are one row a unit, drained once after the job (outbox rows are
# one a subject), where a row a device would be drained a batch of devices at a time.
ASK_UNITS_KEY = "hikeshi.readiness.ask_units"
_DEVICE_FIELDS = ("org_unit_id", "enrollment_state")


@dataclass
class Pending:
    unit_ids: set[int] = field(default_factory=set)
    device_ids: set[int] = field(default_factory=set)
    # Checked in, seen lately: matters only for a swapped-in spare (its first check-in there).
    seen: set[int] = field(default_factory=set)
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.unit_ids) or bool(self.device_ids) or bool(self.seen)


def _changed(obj: Any, name: str) -> tuple[list[Any], bool]:
    """(old and new values, whether it changed) of one attribute in the flush being made."""
    history = inspect(obj).attrs[name].history
    return [*history.deleted, *history.added], history.has_changes()


def _note_device(session: Session, pending: Pending, device: Device, is_new: bool) -> None:
    if is_new:
        if device.org_unit_id is not None:
            pending.unit_ids.add(device.org_unit_id)
        return
    for name in _DEVICE_FIELDS:
        values, changed = _changed(device, name)
        if changed:
            pending.device_ids.add(device.id)
            if name == "org_unit_id":
                pending.unit_ids.update(v for v in values if v is not None)
    _values, changed = _changed(device, "last_seen_at")
    if changed:
        # A check-in only matters when the tablet had not been seen lately: it may be working
        # again. Otherwise every check-in of a busy fleet would recompute its unit.
        old = inspect(device).attrs.last_seen_at.history.deleted
        recent = clock.now() - timedelta(minutes=MIN_SEEN_MINUTES)
        if not old or old[0] is None or old[0] < recent:
            pending.device_ids.add(device.id)
        elif not read_as_no_swapped_spare(session, device.id):
            # Only a swapped-in spare's check-in can (its first one there): the drain looks. A
            # tablet the identity read showed to be none asks nothing, so a device request of a
            # busy fleet writes no outbox row for being seen.
            pending.seen.add(device.id)


def collect_changes(session: Session, _flush_context: Any) -> None:
    if session.info.get(BUSY_KEY):
        return
    pending: Pending = session.info.setdefault(PENDING_KEY, Pending())
    new = set(session.new)
    for obj in [*session.new, *session.dirty, *session.deleted]:
        if isinstance(obj, Device):
            if obj in session.deleted:
                if obj.org_unit_id is not None:
                    pending.unit_ids.add(obj.org_unit_id)
            else:
                _note_device(session, pending, obj, obj in new)
        elif isinstance(
            obj, (Incident, ComplianceFinding, DeviceCompliance, DeviceFacts, DeviceProfileState)
        ):
            # DeviceProfileState: a swapped-in spare works once it holds its unit's profiles.
            pending.device_ids.add(obj.device_id)
        elif isinstance(obj, ContinuityPlan):
            pending.unit_ids.add(obj.org_unit_id)
        elif isinstance(obj, SpareDevice):
            # A spare counts for every unit of its station: recompute them all (cheap, rare).
            pending.everything = True
        elif isinstance(obj, OrgUnit):
            if obj in new:
                pending.unit_ids.add(obj.id)
            elif _changed(obj, "parent_id")[1] or obj in session.deleted:
                pending.everything = True
            elif _changed(obj, "unit_type")[1] or _changed(obj, "kind")[1]:
                pending.unit_ids.add(obj.id)
    if not pending:
        session.info.pop(PENDING_KEY, None)


# Past this many devices changed in one transaction (a fleet-wide check, a bulk action), every
# unit is recomputed: the full pass is set-based, and naming the devices would grow a parameter
# list with the fleet (PostgreSQL refuses more than 65,535).
WHOLE_FLEET_AFTER = 5000


def _units_of(session: Session, pending: Pending) -> set[int] | None:
    if pending.everything or len(pending.seen | pending.device_ids) > WHOLE_FLEET_AFTER:
        return None
    units = set(pending.unit_ids)
    if pending.seen - pending.device_ids:
        # One indexed lookup per check-in; a unit is recomputed only for a spare on its way.
        pending.device_ids |= set(
            session.scalars(
                select(SpareDevice.device_id).where(
                    SpareDevice.device_id.in_(sorted(pending.seen - pending.device_ids)),
                    SpareDevice.swapped_to_unit_id.is_not(None),
                )
            )
        )
    if pending.device_ids:
        rows = session.execute(
            select(Device.id, OrgUnit.id, OrgUnit.kind)
            .join(OrgUnit, OrgUnit.id == Device.org_unit_id)
            .where(Device.id.in_(sorted(pending.device_ids)))
        ).all()
        elsewhere = []
        for device_id, unit_id, kind in rows:
            if kind == OrgUnitKind.UNIT:
                units.add(unit_id)
            else:
                elsewhere.append(device_id)
        if elsewhere and session.scalar(
            select(SpareDevice.id).where(SpareDevice.device_id.in_(elsewhere)).limit(1)
        ):
            # A spare at a station counts for every unit there (and a swapped one for its new unit).
            return None
    return units


log = logging.getLogger(__name__)

# The subject of a READINESS_UNIT row that stands for every unit.
EVERY_UNIT = 0


def ask_before_commit(session: Session) -> None:
    """The before_commit listener: what this transaction may have changed, asked of the outbox."""
    # A savepoint being released is not the end of the transaction: wait for the real commit.
    if session.in_nested_transaction() or session.info.get(BUSY_KEY):
        return
    if session.new or session.dirty or session.deleted:
        session.flush()  # the commit flushes only after this hook: collect what it will write
    pending: Pending | None = session.info.pop(PENDING_KEY, None)
    if not pending:
        return
    if session.info.get(CAUSES_KEY):
        # A person's change that states its cause (a spare swapped in): recomputed here, in its
        # own transaction, where the cause is known. Rare, and never a device's request.
        # Not in a savepoint: releasing one would fire the after_commit hooks (pushes) before the
        # change is committed. recompute reads everything before it writes, so a failure leaves
        # nothing of its own behind but what is dropped here; the drain then recomputes.
        try:
            _recompute(session, pending)
            return
        except Exception:
            log.exception("readiness recompute with its stated cause failed; asked of the outbox")
            for obj in list(session.new):
                if isinstance(obj, (ReadinessEvent, UnitReadinessState, ReadinessDelivery)):
                    session.expunge(obj)
    if pending.everything or len(pending.seen | pending.device_ids) > WHOLE_FLEET_AFTER:
        outbox.ask(session, OutboxTopic.READINESS_UNIT, [EVERY_UNIT])
        return
    if session.info.get(ASK_UNITS_KEY):
        units = _units_of(session, pending)
        outbox.ask(session, OutboxTopic.READINESS_UNIT, [EVERY_UNIT] if units is None else units)
        return
    outbox.ask(session, OutboxTopic.READINESS_UNIT, pending.unit_ids)
    outbox.ask(session, OutboxTopic.READINESS_DEVICE, pending.device_ids)
    outbox.ask(session, OutboxTopic.READINESS_SEEN, pending.seen - pending.device_ids)


READINESS_TOPICS = (OutboxTopic.READINESS_UNIT, OutboxTopic.READINESS_DEVICE, OutboxTopic.READINESS_SEEN)


def recompute_claimed(session: Session, subjects: dict[str, list[int]]) -> None:
    """The drain's handler of the readiness rows: the units they name, recomputed in its transaction."""
    units = set(subjects.get(OutboxTopic.READINESS_UNIT, []))
    pending = Pending(
        unit_ids=units - {EVERY_UNIT},
        device_ids=set(subjects.get(OutboxTopic.READINESS_DEVICE, [])),
        seen=set(subjects.get(OutboxTopic.READINESS_SEEN, [])),
        everything=EVERY_UNIT in units,
    )
    _recompute(session, pending)


def _recompute(session: Session, pending: Pending) -> None:
    session.info[BUSY_KEY] = True  # what the recompute writes asks for no recompute
    try:
        unit_ids = _units_of(session, pending)
        if unit_ids is None or unit_ids:
            recompute_in_parts(session, unit_ids)
    finally:
        session.info.pop(BUSY_KEY, None)


def forget_after_rollback(session: Session, previous: Any) -> None:
    # A rolled-back savepoint leaves the outer transaction's notes in place.
    if not getattr(previous, "nested", False):
        session.info.pop(PENDING_KEY, None)
