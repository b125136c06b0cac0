"""One page of the units' published readiness, and the station and HQ rollups over every unit
in scope, each in a fixed number of statements whatever the number of units.

A prefecture has 14,000 units: the whole list as one answer took 32 s and 15 MB. A page holds
`per_page` units; the rollups are GROUP BYs over the stored readiness rows (a handful of rows per
station), so their size grows with the stations, not the units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, aliased, undefer

from mdm.ground import clock
from mdm.ground.models import OrgUnit, OrgUnitKind, ReadinessState, UnitReadinessState
from mdm.services.continuity.readiness import Rollup, UnitReadiness, compute, from_computed, from_row
from mdm.services.continuity.world import POOL_KINDS, load_world

# Worst first: a dispatcher's page leads with what needs a decision.
STATE_RANK = case(
    {ReadinessState.CRITICAL: 0, ReadinessState.DEGRADED: 1, ReadinessState.READY: 2},
    value=UnitReadinessState.state,
    else_=3,
)


@dataclass
class ReadinessPage:
    """`units`: this page (ordered by code, or worst state first); `total`: units matching in
    scope; `counts`: those units by state; rollups over every unit of the scope."""

    units: list[UnitReadiness]
    page: int
    per_page: int
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    stations: list[Rollup] = field(default_factory=list)
    hq: list[Rollup] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def subtree_of(unit_id: int) -> Select[Any]:
    """The ids of `unit_id` and every unit below it, as SQL (a recursive CTE, no id list)."""
    tree = select(OrgUnit.id).where(OrgUnit.id == unit_id).cte("readiness_subtree", recursive=True)
    child = aliased(OrgUnit)
    tree = tree.union_all(select(child.id).where(child.parent_id == tree.c.id))
    return select(tree.c.id)


def _matching_units(
    scope: set[int] | frozenset[int] | None, under: int | None, state: str | None
) -> Select[OrgUnit, UnitReadinessState]:
    stmt = (
        select(OrgUnit, UnitReadinessState)
        .outerjoin(UnitReadinessState, UnitReadinessState.org_unit_id == OrgUnit.id)
        .where(OrgUnit.kind == OrgUnitKind.UNIT)
    )
    if scope is not None:
        stmt = stmt.where(OrgUnit.id.in_(sorted(scope)))
    if under is not None:
        stmt = stmt.where(OrgUnit.id.in_(subtree_of(under)))
    if state is not None:
        stmt = stmt.where(UnitReadinessState.state == state)
    return stmt


def readiness_page(
    session: Session,
    scope: set[int] | frozenset[int] | None = None,
    *,
    page: int = 1,
    per_page: int = 100,
    under: int | None = None,
    state: str | None = None,
    order: str = "code",
) -> ReadinessPage:
    """Units in `scope` (None: all), below org unit `under` when given, in `state` when given."""
    matching = _matching_units(scope, under, state)
    # code NULLS LAST as the unique index on code is ordered: PostgreSQL walks it, not the table.
    by_code = (OrgUnit.code.nulls_last(), OrgUnit.name_ja, OrgUnit.id)
    ordering = (STATE_RANK, *by_code) if order == "state" else by_code
    # The page's ids first, ordered over the narrow columns (the board index of migration
    # 0021), then only those units' rows with their details: sorting 14,000 published rows
    # with their details to keep 50 read the whole table on every page.
    ids = list(
        session.scalars(
            matching.with_only_columns(OrgUnit.id)
            .order_by(*ordering)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    found = (
        {unit.id: (unit, row) for unit, row in session.execute(matching.where(OrgUnit.id.in_(ids)))}
        if ids
        else {}
    )
    rows = [found[i] for i in ids if i in found]
    unknown = {unit.id for unit, row in rows if row is None}
    # Units never evaluated (only before the scheduler's first recompute after an upgrade) are
    # computed for this page without being written.
    fresh = compute(load_world(session, unknown), clock.now()) if unknown else {}
    units = [
        from_row(unit, row) if row is not None else from_computed(unit, fresh[unit.id]) for unit, row in rows
    ]
    parents = {unit.id: unit.parent_id for unit, _ in rows}
    stations, hq, counts, total = _rollups(session, matching, units, unknown, parents)
    return ReadinessPage(units, page, per_page, total, counts, stations, hq)


def _rollups(
    session: Session,
    matching: Select[OrgUnit, UnitReadinessState],
    units: list[UnitReadiness],
    unknown: set[int],
    parent_of_page: dict[int, int | None],
) -> tuple[list[Rollup], list[Rollup], dict[str, int], int]:
    """Per station and per HQ: counts by state of every matching unit, the worst state, spares;
    `unit_ids` are this page's units in the rollup. Also the matching units by state and their
    number. One GROUP BY for all of it."""
    grouped = session.execute(
        matching.with_only_columns(
            OrgUnit.parent_id,
            UnitReadinessState.station_id,
            UnitReadinessState.state,
            func.count(),
            func.max(UnitReadinessState.spares_available),
        ).group_by(OrgUnit.parent_id, UnitReadinessState.station_id, UnitReadinessState.state)
    ).all()
    counts = dict.fromkeys(ReadinessState.ORDER, 0)
    total = 0
    tallies = []
    for parent_id, station_id, found_state, n, spares in grouped:
        total += n
        if found_state is not None:  # not evaluated yet: counted in the total only (or below)
            counts[found_state] += n
            tallies.append((parent_id, station_id, found_state, n, spares))
    for u in units:
        if u.unit_id in unknown:
            counts[u.state] += 1
    # (parent, station, state, count, spares) of the page's never-evaluated units as well.
    tallies += [
        (parent_of_page.get(u.unit_id), u.station_id, u.state, 1, u.spares_available)
        for u in units
        if u.unit_id in unknown
    ]
    # Stations, branches and HQs: a few hundred rows even for a prefecture (units are leaves).
    nodes = {n.id: n for n in session.scalars(select(OrgUnit).where(OrgUnit.kind.in_(POOL_KINDS)))}
    stations: dict[int | None, Rollup] = {}
    hqs: dict[int, Rollup] = {}
    hq_spares: dict[int, dict[int | None, int]] = {}
    for parent_id, station_id, found_state, n, spares in tallies:
        station = _rollup(stations, station_id, nodes)
        _tally(station, found_state, int(n))
        station.spares_available = max(station.spares_available, int(spares or 0))
        root = _root(parent_id, nodes)
        if root is None:
            continue
        top = _rollup(hqs, root, nodes)
        _tally(top, found_state, int(n))
        per_station = hq_spares.setdefault(root, {})
        per_station[station_id] = max(per_station.get(station_id, 0), int(spares or 0))
    for root, per_station in hq_spares.items():
        hqs[root].spares_available = sum(per_station.values())
    for u in units:
        if u.station_id in stations:
            stations[u.station_id].unit_ids.append(u.unit_id)
        root = _root(parent_of_page.get(u.unit_id), nodes)
        if root in hqs:
            hqs[root].unit_ids.append(u.unit_id)
    return (
        sorted(stations.values(), key=lambda r: (r.org_unit_id is None, r.org_unit_id or 0)),
        sorted(hqs.values(), key=lambda r: r.org_unit_id or 0),
        counts,
        total,
    )


def _root(node_id: int | None, nodes: dict[int, OrgUnit]) -> int | None:
    seen: set[int] = set()
    root = None
    while node_id is not None and node_id in nodes and node_id not in seen:
        seen.add(node_id)
        root = node_id
        node_id = nodes[node_id].parent_id
    return root


def _rollup(into: dict[Any, Rollup], node_id: int | None, nodes: dict[int, OrgUnit]) -> Rollup:
    rollup = into.get(node_id)
    if rollup is None:
        node = nodes.get(node_id) if node_id is not None else None
        if node is not None:
            rollup = Rollup(node.id, node.name_ja, node.name_en or node.name_ja, node.kind)
        else:
            rollup = Rollup(None, "所属署なし", "no station", OrgUnitKind.STATION)  # as World.station_name
        into[node_id] = rollup
    return rollup


def _tally(rollup: Rollup, state: str, n: int) -> None:
    rollup.counts[state] = rollup.counts.get(state, 0) + n
    rollup.state = ReadinessState.worst([rollup.state, state])


@dataclass
class MissingPage:
    """One unit's published missing tablets, a page at a time, worst first; `event_id` is the
    change that published them (None: the unit has not been evaluated yet, computed now)."""

    unit_id: int
    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int
    event_id: int | None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def missing_page(session: Session, unit: OrgUnit, *, page: int = 1, per_page: int = 100) -> MissingPage:
    """The tablets of `unit` that do not count, as its last readiness event published them."""
    row = session.scalars(
        select(UnitReadinessState)
        .where(UnitReadinessState.org_unit_id == unit.id)
        .options(undefer(UnitReadinessState.missing_devices))
    ).one_or_none()
    if row is not None:
        missing, event_id = row.missing_devices, row.last_event_id
    else:
        computed = compute(load_world(session, {unit.id}), clock.now()).get(unit.id)
        missing, event_id = (computed.missing if computed is not None else []), None
    start = (page - 1) * per_page
    return MissingPage(unit.id, missing[start : start + per_page], page, per_page, len(missing), event_id)
