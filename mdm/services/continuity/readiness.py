"""Readiness of each unit against its plan — ready / degraded / critical — rolled up to stations
and HQ, and every change recorded as an event with its cause in Japanese and English.

`recompute` is called after every device change (mdm.services.continuity.hooks, in the transaction that
made the change) and by the scheduler; it writes only when a unit's published snapshot changes.
The stored rows are exactly what the latest events said, so a poller, a stream subscriber and a
webhook receiver see the same state under the same event ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session, defer, undefer
from sqlalchemy.orm.attributes import flag_modified

from mdm.ground import clock
from mdm.ground.db import is_postgres
from mdm.ground.models import (
    DeliveryStatus,
    Device,
    OrgUnit,
    OrgUnitKind,
    ReadinessDelivery,
    ReadinessEvent,
    ReadinessState,
    SpareDevice,
    UnitReadinessState,
    Webhook,
)
from mdm.ground.signals import READINESS, announce
from mdm.services.continuity.plans import Plan
from mdm.services.continuity.working import Reason, is_available_spare, problems
from mdm.services.continuity.world import World, load_world

# Serializes writers of readiness events on PostgreSQL so ids are handed out in commit order and
# a reader that follows "id > last seen" never skips one (SQLite writers are serialized anyway).
ADVISORY_LOCK_KEY = 0x48524459  # "HRDY" (the audit chain has "HIKE", the scheduler "HKSC")
EVENT_KIND = "readiness.changed"
# A stated cause (e.g. a spare swap) is used instead of the one read from the difference.
CAUSES_KEY = "hikeshi.readiness.causes"
EVENTS_WRITTEN_KEY = "hikeshi.readiness.events_written"
# Which reason names a tablet's trouble when it has several.
REASON_ORDER = (
    "stolen",
    "lost",
    "retired",
    "not_enrolled",
    "spare_not_checked_in",
    "spare_profiles_pending",
    "noncompliant",
    "not_seen",
    "battery_low",
)
# Missing tablets a page of units, a board row and an event carry for one unit (worst first);
# the rest are counted (missing_total) and listed for that unit alone, a page at a time.
MISSING_SHOWN = 20


@dataclass(frozen=True)
class Computed:
    unit: OrgUnit
    plan: Plan
    state: str
    working: int
    required: int
    spares_available: int
    incoming: int
    station_id: int | None
    station_ja: str
    station_en: str
    missing: list[dict[str, Any]]  # every tablet that does not count, worst first

    def signature(self) -> tuple[Any, ...]:
        return _signature(
            self.state, self.working, self.required, self.spares_available, self.incoming, self.missing
        )

    @property
    def missing_shown(self) -> list[dict[str, Any]]:
        return self.missing[:MISSING_SHOWN]

    def details(self) -> dict[str, Any]:
        return {
            "missing": self.missing_shown,
            "incoming": self.incoming,
            "plan": self.plan.as_dict(),
            "station": {"id": self.station_id, "name_ja": self.station_ja, "name_en": self.station_en},
        }


def _signature(
    state: str, working: int, required: int, spares: int, incoming: int, missing: list[dict[str, Any]]
) -> tuple[Any, ...]:
    reasons = tuple(sorted((m["device_id"], tuple(sorted(r["code"] for r in m["reasons"]))) for m in missing))
    return (state, working, required, spares, incoming, reasons)


def _stored_incoming(row: UnitReadinessState) -> int:
    """The spares on their way, as a recompute stored them in `details`."""
    return int((row.details or {}).get("incoming", 0))


def _stored_signature(row: UnitReadinessState) -> tuple[Any, ...]:
    return _signature(
        row.state, row.working, row.required, row.spares_available, _stored_incoming(row), row.missing_devices
    )


def _worst_first(entry: dict[str, Any]) -> tuple[int, str, int]:
    """A lost or stolen tablet before one merely not seen, then by name: what a dispatcher reads
    first when only MISSING_SHOWN of a unit's missing tablets are on the page."""
    code = entry["reasons"][0]["code"]
    rank = REASON_ORDER.index(code) if code in REASON_ORDER else len(REASON_ORDER)
    return rank, entry["name"] or "", entry["device_id"]


def _sorted_reasons(reasons: list[Reason]) -> list[Reason]:
    return sorted(reasons, key=lambda r: REASON_ORDER.index(r.code) if r.code in REASON_ORDER else 99)


def compute(world: World, now: datetime) -> dict[int, Computed]:
    """The readiness of every target unit of `world` (nothing written)."""
    out: dict[int, Computed] = {}
    for unit in world.targets:
        plan = world.plans[unit.id]
        working = 0
        incoming = 0
        missing: list[dict[str, Any]] = []
        for facts in world.tablets.get(unit.id, []):
            found = _sorted_reasons(problems(facts, plan, now))
            if not found:
                working += 1
                continue
            entry: dict[str, Any] = {
                "device_id": facts.device_id,
                "name": facts.name,
                "serial_number": facts.serial_number,
                "reasons": [r.as_dict() for r in found],
            }
            if world.incoming.get(facts.device_id) == unit.id:
                incoming += 1
                entry["incoming_spare"] = True
            missing.append(entry)
        missing.sort(key=_worst_first)
        pool = world.pool_of(unit.id)
        spares = sum(1 for s in world.spares.get(pool, []) if is_available_spare(s)) if pool else 0
        if working >= plan.required_working:
            state = ReadinessState.READY
        elif spares > 0 or incoming > 0:
            state = ReadinessState.DEGRADED
        else:
            state = ReadinessState.CRITICAL
        station_ja, station_en = world.station_name(pool)
        out[unit.id] = Computed(
            unit,
            plan,
            state,
            working,
            plan.required_working,
            spares,
            incoming,
            pool,
            station_ja,
            station_en,
            missing,
        )
    return out


# -- recording changes ------------------------------------------------------------------------------


def note_cause(session: Session, unit_id: int, code: str, ja: str, en: str) -> None:
    """State why the next change of `unit_id` in this transaction happens (e.g. a spare swap)."""
    session.info.setdefault(CAUSES_KEY, {})[unit_id] = (code, ja, en)


def recompute(session: Session, unit_ids: set[int] | None = None) -> list[ReadinessEvent]:
    """Recompute units (None: all) and record what changed; never commits."""
    now = clock.now()
    stored = _stored(session, unit_ids)  # read before the devices: see mdm.services.continuity.hooks
    world = load_world(session, unit_ids)
    computed = compute(world, now)
    gone, changed = _differences(stored, computed, unit_ids)
    arrived = _arrived_spares(world, computed)
    if not changed and not gone and not arrived:
        return []
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        # The first read's world and results go before the second is built: held together they
        # were 40 % of a recompute's peak memory.
        del world, computed
        # Under the lock, read again: a writer that committed meanwhile is now visible.
        stored = _stored(session, unit_ids, refresh=True)
        world = load_world(session, unit_ids)
        computed = compute(world, now)
        gone, changed = _differences(stored, computed, unit_ids)
        arrived = _arrived_spares(world, computed)
    for uid in gone:
        session.delete(stored.pop(uid))
    _clear_arrived_spares(session, arrived)
    causes = session.info.pop(CAUSES_KEY, {})
    written = [
        _record_change(session, stored.get(uid), computed[uid], causes.get(uid), now)
        for uid in sorted(changed)
    ]
    session.flush()
    if written:
        _finish_events(session, written, computed)
        session.info[EVENTS_WRITTEN_KEY] = True
    return [event for event, _ in written]


# Tablets whose readiness one part of a recompute holds in memory at once (past its first unit):
# 100 units of 1,000 tablets computed together held 310 MB.
TABLETS_PER_PART = 10_000


def units_with_tablets(unit_ids: set[int] | None = None) -> Select[int, int]:
    """(unit id, number of tablets in it) of `unit_ids` (None: every unit), in id order."""
    tablets = select(func.count(Device.id)).where(Device.org_unit_id == OrgUnit.id).scalar_subquery()
    stmt = select(OrgUnit.id, tablets).where(OrgUnit.kind == OrgUnitKind.UNIT).order_by(OrgUnit.id)
    if unit_ids is not None:
        stmt = stmt.where(OrgUnit.id.in_(sorted(unit_ids)))
    return stmt


def tablet_bounded_parts(counted: Iterable[tuple[int, int]], most_tablets: int) -> Iterator[list[int]]:
    """Unit ids in their order, in parts of at most `most_tablets` tablets (a bigger unit alone)."""
    part: list[int] = []
    held = 0
    for unit_id, tablets in counted:
        if part and held + tablets > most_tablets:
            yield part
            part, held = [], 0
        part.append(unit_id)
        held += tablets
    if part:
        yield part


def recompute_in_parts(
    session: Session, unit_ids: set[int] | None = None, *, most_tablets: int = TABLETS_PER_PART
) -> list[ReadinessEvent]:
    """`recompute`, in one transaction, a part of the units at a time: the memory of one part's
    tablets, not of every unit's (the drain after a fleet check is asked for every unit)."""
    if unit_ids is not None and len(unit_ids) <= 1:
        return recompute(session, unit_ids)  # one unit is one part whatever its size
    events: list[ReadinessEvent] = []
    covered: set[int] = set()
    # Read whole before the parts' statements run on the same connection (two ints a unit).
    counted = session.execute(units_with_tablets(unit_ids)).tuples().all()
    for part in tablet_bounded_parts(counted, most_tablets):
        events += recompute(session, set(part))
        covered.update(part)
    # What is asked for and is no longer a unit (deleted, or made a station): its row goes.
    if unit_ids is None:
        no_longer = set(
            session.scalars(
                select(UnitReadinessState.org_unit_id).where(
                    UnitReadinessState.org_unit_id.not_in(
                        select(OrgUnit.id).where(OrgUnit.kind == OrgUnitKind.UNIT).scalar_subquery()
                    )
                )
            )
        )
    else:
        no_longer = unit_ids - covered
    if no_longer:
        events += recompute(session, no_longer)
    return events


def _differences(
    stored: dict[int, UnitReadinessState], computed: dict[int, Computed], unit_ids: set[int] | None
) -> tuple[list[int], set[int]]:
    """(rows of units that are no longer units, units whose published snapshot changed)."""
    gone = [uid for uid in stored if uid not in computed and (unit_ids is None or uid in unit_ids)]
    changed = {
        uid
        for uid, c in computed.items()
        if uid not in stored or _stored_signature(stored[uid]) != c.signature()
    }
    return gone, changed


def _stored(
    session: Session, unit_ids: set[int] | None, *, refresh: bool = False
) -> dict[int, UnitReadinessState]:
    # Every missing tablet, for the comparison: in the same statement, not one more per unit.
    stmt = select(UnitReadinessState).options(undefer(UnitReadinessState.missing_devices))
    if unit_ids is not None:
        stmt = stmt.where(UnitReadinessState.org_unit_id.in_(sorted(unit_ids)))
    if refresh:
        stmt = stmt.execution_options(populate_existing=True)
    return {row.org_unit_id: row for row in session.scalars(stmt)}


def _arrived_spares(world: World, computed: dict[int, Computed]) -> list[int]:
    """Swapped-in spares now working in their unit: no longer on their way."""
    arrived = []
    for device_id, unit_id in world.incoming.items():
        c = computed.get(unit_id)
        if c is not None and all(m["device_id"] != device_id for m in c.missing):
            if any(f.device_id == device_id for f in world.tablets.get(unit_id, [])):
                arrived.append(device_id)
    return arrived


def _clear_arrived_spares(session: Session, device_ids: list[int]) -> None:
    if not device_ids:
        return
    # Bounded lists: every spare of a prefecture may arrive in the same run.
    for start in range(0, len(device_ids), 900):
        chunk = device_ids[start : start + 900]
        for row in session.scalars(select(SpareDevice).where(SpareDevice.device_id.in_(chunk))):
            session.delete(row)


def _record_change(
    session: Session,
    row: UnitReadinessState | None,
    new: Computed,
    stated: tuple[str, str, str] | None,
    now: datetime,
) -> tuple[ReadinessEvent, UnitReadinessState]:
    previous_state = row.state if row is not None else None
    code, detail_ja, detail_en = stated or describe_difference(row, new)
    cause_ja, cause_en = cause_sentence(new, detail_ja, detail_en)
    event = ReadinessEvent(
        org_unit_id=new.unit.id,
        previous_state=previous_state,
        state=new.state,
        cause_code=code,
        cause_ja=cause_ja[:512],
        cause_en=cause_en[:512],
        payload={},
        occurred_at=now,
    )
    session.add(event)
    if row is None:
        row = UnitReadinessState(org_unit_id=new.unit.id)
        session.add(row)
    row.state = new.state
    row.working = new.working
    row.required = new.required
    row.spares_available = new.spares_available
    row.station_id = new.station_id
    row.details = new.details()
    row.missing_devices = new.missing
    row.missing_total = len(new.missing)
    row.changed_at = now
    # Every column written, changed or not: one shape of UPDATE for all the units that changed,
    # sent as one executemany (a shape per combination of changed columns went one by one).
    for column in _ROW_COLUMNS:
        flag_modified(row, column)
    return event, row


_ROW_COLUMNS = (
    "state",
    "working",
    "required",
    "spares_available",
    "station_id",
    "details",
    "missing_devices",
    "missing_total",
    "changed_at",
)


def _finish_events(
    session: Session, events: list[tuple[ReadinessEvent, UnitReadinessState]], computed: dict[int, Computed]
) -> None:
    """Give each event its published payload (which names its own id), queue its webhooks, and
    signal every node's readiness streams (delivered when, and only if, this transaction commits)."""
    webhooks = list(session.scalars(select(Webhook).where(Webhook.enabled.is_(True)).order_by(Webhook.id)))
    # The state row's unit is never null; the event's may become null once its unit is deleted.
    station_states = _station_states(session, {computed[row.org_unit_id].station_id for _, row in events})
    for event, row in events:
        c = computed[row.org_unit_id]
        row.last_event_id = event.id
        event.payload = event_payload(event, c, station_states.get(c.station_id))
        body = json.dumps(event.payload, ensure_ascii=False, sort_keys=True).encode()
        for webhook in webhooks:
            session.add(
                ReadinessDelivery(
                    webhook_id=webhook.id,
                    event_id=event.id,
                    body=body,
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=event.occurred_at,
                    created_at=event.occurred_at,
                )
            )
    session.flush()
    announce(session, READINESS, [max(event.id for event, _ in events)])


def _station_states(session: Session, station_ids: set[int | None]) -> dict[int | None, str]:
    ids = sorted(s for s in station_ids if s is not None)
    if not ids:
        return {}
    states: dict[int | None, list[str]] = {}
    for station_id, state in session.execute(
        select(UnitReadinessState.station_id, UnitReadinessState.state).where(
            UnitReadinessState.station_id.in_(ids)
        )
    ):
        states.setdefault(station_id, []).append(state)
    return {sid: ReadinessState.worst(s) for sid, s in states.items()}


def event_payload(event: ReadinessEvent, c: Computed, station_state: str | None) -> dict[str, Any]:
    """The one message of a change: SSE data, webhook body and history entry are this dict."""
    return {
        "kind": EVENT_KIND,
        "event_id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "unit": {
            "id": c.unit.id,
            "name_ja": c.unit.name_ja,
            "name_en": c.unit.name_en,
            "code": c.unit.code,
            "unit_type": c.unit.unit_type,
        },
        "previous_state": event.previous_state,
        "state": c.state,
        "working": c.working,
        "required": c.required,
        "spares_available": c.spares_available,
        "incoming_spares": c.incoming,
        "station": {
            "id": c.station_id,
            "name_ja": c.station_ja,
            "name_en": c.station_en,
            "state": station_state,
        },
        "cause": {"code": event.cause_code, "ja": event.cause_ja, "en": event.cause_en},
        "missing": c.missing_shown,
        "missing_total": len(c.missing),
    }


# -- causes -----------------------------------------------------------------------------------------


def _first_reason(entry: dict[str, Any]) -> tuple[str, str, str]:
    reason = entry["reasons"][0]
    return reason["code"], reason["ja"], reason["en"]


def describe_difference(row: UnitReadinessState | None, new: Computed) -> tuple[str, str, str]:
    """(code, ja, en) of what changed between the stored snapshot and the new one."""
    if row is None:
        return ("evaluated", "計画に基づき初回評価", "first evaluation against its plan")
    before = {m["device_id"]: m for m in row.missing_devices}
    after = {m["device_id"]: m for m in new.missing}
    for device_id, entry in after.items():
        codes = {r["code"] for r in entry["reasons"]}
        old_codes = {r["code"] for r in before[device_id]["reasons"]} if device_id in before else set()
        if codes - old_codes:
            return _first_reason(entry)
    if row.required != new.required:
        return (
            "plan_changed",
            f"必要台数を{row.required}台から{new.required}台に変更",
            f"plan changed from {row.required} to {new.required} tablets",
        )
    recovered = [before[d] for d in before if d not in after]
    if recovered and new.working > row.working:
        name = recovered[0]["name"]
        if recovered[0].get("incoming_spare"):
            return (
                "spare_working",
                f"予備機 {name} が接続し隊のプロファイルを確認、稼働開始",
                f"spare {name} checked in holding the unit's profiles",
            )
        return ("device_working", f"端末 {name} が稼働に復帰", f"tablet {name} working again")
    if new.working > row.working:
        return ("device_added", "稼働端末が配置された", "a working tablet was assigned")
    if new.working < row.working:
        return ("device_removed", "稼働端末が他所属へ移動", "a working tablet was moved out")
    if new.spares_available > row.spares_available:
        return ("spare_available", f"{new.station_ja}に予備機が追加", f"spare added at {new.station_en}")
    if new.spares_available < row.spares_available:
        return ("spare_gone", f"{new.station_ja}の予備機が減少", f"fewer spares at {new.station_en}")
    if new.incoming != _stored_incoming(row):
        return ("spare_incoming", "予備機が配置され接続待ち", "spare assigned, waiting for its check-in")
    return ("reevaluated", "再評価", "re-evaluated")


def cause_sentence(c: Computed, detail_ja: str, detail_en: str) -> tuple[str, str]:
    """ "救急3隊: critical — tablet lost (incident 42), no spare at 中央署" and its Japanese."""
    label_ja, label_en = ReadinessState.LABELS[c.state]
    name_ja = c.unit.name_ja
    name_en = c.unit.name_en or c.unit.name_ja
    count = f"{c.working}/{c.required}"
    if c.state == ReadinessState.READY:
        tail_ja, tail_en = f"(稼働 {count}台)", f"({count} working)"
    elif c.spares_available > 0:
        tail_ja = f"、{c.station_ja}に予備機{c.spares_available}台 (稼働 {count}台)"
        tail_en = f", {c.spares_available} spare(s) at {c.station_en} ({count} working)"
    elif c.incoming > 0:
        tail_ja, tail_en = f"、予備機の接続待ち (稼働 {count}台)", f", spare on its way ({count} working)"
    else:
        tail_ja = f"、{c.station_ja}に予備機なし (稼働 {count}台)"
        tail_en = f", no spare at {c.station_en} ({count} working)"
    sep_ja = "" if tail_ja.startswith("、") else " "
    sep_en = "" if tail_en.startswith(",") else " "
    return (
        f"{name_ja}: {label_ja} — {detail_ja}{sep_ja}{tail_ja}",
        f"{name_en}: {label_en.lower()} — {detail_en}{sep_en}{tail_en}",
    )


# -- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitReadiness:
    """One unit's published readiness, as the dispatch feed and the dashboard show it."""

    unit_id: int
    unit_name_ja: str
    unit_name_en: str | None
    unit_code: str | None
    unit_type: str | None
    state: str
    working: int
    required: int
    spares_available: int
    incoming_spares: int
    station_id: int | None
    station_name_ja: str
    station_name_en: str
    missing: list[dict[str, Any]]  # the first MISSING_SHOWN, worst first
    missing_total: int
    plan: dict[str, Any]
    event_id: int | None
    changed_at: datetime | None

    @property
    def label(self) -> tuple[str, str]:
        return ReadinessState.LABELS[self.state]


@dataclass
class Rollup:
    """A station's (or the HQ's) units by state; its state is its worst unit's."""

    org_unit_id: int | None
    name_ja: str
    name_en: str
    kind: str
    state: str = ReadinessState.READY
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ReadinessState.ORDER, 0))
    unit_ids: list[int] = field(default_factory=list)
    spares_available: int = 0


def last_event_id(session: Session) -> int:
    return int(session.scalar(select(func.max(ReadinessEvent.id))) or 0)


def current_readiness(
    session: Session, principal_scope: set[int] | frozenset[int] | None = None
) -> list[UnitReadiness]:
    """Every unit's published readiness (only units in `principal_scope` when given).

    Units never evaluated yet (e.g. before the first recompute after an upgrade) are computed on
    the fly without being written.
    """
    unit_stmt = select(OrgUnit).where(OrgUnit.kind == OrgUnitKind.UNIT)
    row_stmt = select(UnitReadinessState)
    if principal_scope is not None:
        # In SQL: one unit's page read every published row of the prefecture to keep one.
        unit_stmt = unit_stmt.where(OrgUnit.id.in_(sorted(principal_scope)))
        row_stmt = row_stmt.where(UnitReadinessState.org_unit_id.in_(sorted(principal_scope)))
    units = {u.id: u for u in session.scalars(unit_stmt)}
    rows = {r.org_unit_id: r for r in session.scalars(row_stmt)}
    fresh: dict[int, Computed] = {}
    unknown = set(units) - set(rows)
    if unknown:
        fresh = compute(load_world(session, unknown), clock.now())
    out = []
    for uid in sorted(units, key=lambda i: (units[i].code or "", units[i].name_ja, i)):
        unit = units[uid]
        if uid in rows:
            out.append(from_row(unit, rows[uid]))
        elif uid in fresh:
            out.append(from_computed(unit, fresh[uid]))
    return out


def _named(unit: OrgUnit) -> tuple[int, str, str | None, str | None, str | None]:
    """The leading fields of a UnitReadiness: which unit it is."""
    return (unit.id, unit.name_ja, unit.name_en, unit.code, unit.unit_type)


def from_row(unit: OrgUnit, r: UnitReadinessState) -> UnitReadiness:
    """A unit's published readiness as stored by the last recompute."""
    details = r.details or {}
    station = details.get("station") or {}
    return UnitReadiness(
        *_named(unit),
        r.state,
        r.working,
        r.required,
        r.spares_available,
        _stored_incoming(r),
        r.station_id,
        station.get("name_ja", ""),
        station.get("name_en", ""),
        list(details.get("missing", []))[:MISSING_SHOWN],
        r.missing_total,
        dict(details.get("plan", {})),
        r.last_event_id,
        r.changed_at,
    )


def from_computed(unit: OrgUnit, c: Computed) -> UnitReadiness:
    """A unit never evaluated yet, computed on the fly: no event and no change time to show."""
    return UnitReadiness(
        *_named(unit),
        c.state,
        c.working,
        c.required,
        c.spares_available,
        c.incoming,
        c.station_id,
        c.station_ja,
        c.station_en,
        c.missing_shown,
        len(c.missing),
        c.plan.as_dict(),
        None,
        None,
    )


def station_rollup(session: Session, units: list[UnitReadiness] | None = None) -> list[Rollup]:
    """Per station (the pool a unit draws spares from): counts by state, worst state, spares."""
    units = current_readiness(session) if units is None else units
    by_station: dict[int | None, Rollup] = {}
    for u in units:
        rollup = by_station.get(u.station_id)
        if rollup is None:
            node = session.get(OrgUnit, u.station_id) if u.station_id is not None else None
            rollup = Rollup(
                u.station_id,
                u.station_name_ja,
                u.station_name_en,
                node.kind if node is not None else OrgUnitKind.STATION,
            )
            by_station[u.station_id] = rollup
        _add(rollup, u)
        rollup.spares_available = max(rollup.spares_available, u.spares_available)
    return sorted(by_station.values(), key=lambda r: (r.org_unit_id is None, r.org_unit_id or 0))


def hq_rollup(session: Session, units: list[UnitReadiness] | None = None) -> list[Rollup]:
    """Per 消防本部 (the root of the tree above each unit)."""
    units = current_readiness(session) if units is None else units
    parents = {
        uid: (pid, kind)
        for uid, pid, kind in session.execute(select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.kind))
    }
    out: dict[int, Rollup] = {}
    for u in units:
        root = u.unit_id
        seen = set()
        while parents.get(root, (None, None))[0] is not None and root not in seen:
            seen.add(root)
            root = parents[root][0]  # type: ignore[assignment]
        rollup = out.get(root)
        if rollup is None:
            node = session.get(OrgUnit, root)
            assert node is not None
            rollup = Rollup(root, node.name_ja, node.name_en or node.name_ja, node.kind)
            out[root] = rollup
        _add(rollup, u)
    for rollup in out.values():
        station_spares: dict[int | None, int] = {}
        for u in units:
            if u.unit_id in rollup.unit_ids:
                station_spares[u.station_id] = u.spares_available
        rollup.spares_available = sum(station_spares.values())
    return sorted(out.values(), key=lambda r: r.org_unit_id or 0)


def _add(rollup: Rollup, u: UnitReadiness) -> None:
    rollup.counts[u.state] = rollup.counts.get(u.state, 0) + 1
    rollup.unit_ids.append(u.unit_id)
    rollup.state = ReadinessState.worst([rollup.state, u.state])


def readiness_history(
    session: Session,
    unit_id: int | None = None,
    since: datetime | None = None,
    *,
    limit: int = 200,
    principal_scope: set[int] | frozenset[int] | None = None,
) -> list[ReadinessEvent]:
    """Changes of readiness, newest first, without their published payload (loaded if read): a
    history lists causes, and a payload holds up to MISSING_SHOWN missing tablets (every one in
    events published before migration 0024: 110 KB at 1,000 tablets, 100 events on the board)."""
    stmt = (
        select(ReadinessEvent)
        .options(defer(ReadinessEvent.payload))
        .order_by(ReadinessEvent.id.desc())
        .limit(limit)
    )
    if unit_id is not None:
        stmt = stmt.where(ReadinessEvent.org_unit_id == unit_id)
    if since is not None:
        stmt = stmt.where(ReadinessEvent.occurred_at >= since)
    if principal_scope is not None:
        stmt = stmt.where(ReadinessEvent.org_unit_id.in_(sorted(principal_scope)))
    return list(session.scalars(stmt))


def events_after(
    session: Session,
    after_id: int,
    *,
    limit: int = 100,
    principal_scope: set[int] | frozenset[int] | None = None,
) -> list[ReadinessEvent]:
    """Changes with an id above `after_id`, oldest first (the stream's and a resume's source)."""
    stmt = select(ReadinessEvent).where(ReadinessEvent.id > after_id).order_by(ReadinessEvent.id).limit(limit)
    if principal_scope is not None:
        stmt = stmt.where(ReadinessEvent.org_unit_id.in_(sorted(principal_scope)))
    return list(session.scalars(stmt))
