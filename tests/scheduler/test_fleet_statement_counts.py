"""Fleet-wide computations make no round trip per device: readiness, the offline check and the
certificate check run the same number of SQL statements, each with the same number of bound
parameters, at N and at 3N devices (issue 23: 100,000 devices, PostgreSQL's 65,535 parameters).
Counted, not timed; speed is measured in tests/bench/bench_fleet_scale.py."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.models import (
    Alert,
    ComplianceFinding,
    Device,
    DeviceCertificate,
    OrgUnit,
    UnitReadinessState,
)
from mdm.ground.outbox_drain import drain
from mdm.roots.scheduler.jobs import FLEET_PAGE, JobContext, fleet_check, run_job
from mdm.services.continuity.readiness import compute
from mdm.services.continuity.spares import mark_spare
from mdm.services.continuity.world import load_world
from mdm.services.orgunits import assign_device
from mdm.services.osupdates.enforcement import sync_fleet
from tests.continuity.helpers import build_tree, tablet

N = 12


@dataclass
class Statements:
    count: int = 0
    most_parameters: int = 0
    texts: list[str] = field(default_factory=list)


@contextmanager
def counted(engine: Engine) -> Iterator[Statements]:
    seen = Statements()

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.count += 1
        seen.texts.append(statement)
        if isinstance(parameters, dict | tuple | list):
            seen.most_parameters = max(seen.most_parameters, len(parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _add_tablets(session: Session, units: list[OrgUnit], count: int, start: int) -> None:
    """`count` tablets spread over the units: a third offline for two days, a third with an
    identity certificate expiring in ten days, every sixth a spare kept at its station."""
    now = clock.now()
    for i in range(start, start + count):
        device = tablet(session, units[i % len(units)], f"tablet {i}")
        if i % 3 == 1:
            device.last_seen_at = now - timedelta(days=2)
        if i % 3 == 2:
            session.add(
                DeviceCertificate(
                    fingerprint_sha256=f"{i:064x}",
                    device_id=device.id,
                    subject=f"CN=tablet {i}",
                    issuer="CN=ca",
                    serial_hex=f"{i:x}",
                    not_before=now - timedelta(days=300),
                    not_after=now + timedelta(days=10),
                    pem="-",
                    purpose="mdm_identity",
                )
            )
        if i % 6 == 5:
            station = session.get(OrgUnit, device.org_unit_id and units[i % len(units)].parent_id)
            assign_device(session, device, station, actor=SYSTEM)
            mark_spare(session, device, actor=SYSTEM)
    session.commit()


def _sync_os_updates(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        sync_fleet(session, actor=SYSTEM)
        session.commit()


def _measure(
    engine: Engine, session_factory: sessionmaker[Session], settings: Any
) -> dict[str, tuple[int, int]]:
    ctx = JobContext(session_factory, settings, "host:1")
    out: dict[str, tuple[int, int]] = {}

    def readiness() -> None:
        with session_factory() as session:
            compute(load_world(session), clock.now())

    jobs: dict[str, Callable[[], Any]] = {
        "readiness": readiness,
        "readiness_recompute": lambda: run_job(ctx, "readiness_recompute"),
        "offline_check": lambda: run_job(ctx, "offline_check"),
        "certificate_expiry": lambda: run_job(ctx, "certificate_expiry"),
        # Bringing tablets to their OS target, then the deadline check: each page's update rows
        # (and facts) in one query a table, the policies and releases once a page.
        "os_update_sync": lambda: _sync_os_updates(session_factory),
        "os_updates": lambda: run_job(ctx, "os_updates"),
    }
    for name, run in jobs.items():
        with counted(engine) as first:
            run()  # opens the findings of the devices just added: in batches, not one per device
        with counted(engine) as seen:
            run()  # the steady state: nothing changed, so nothing may scale with the fleet
        out[name] = (seen.count, seen.most_parameters)
        out[f"{name}, first run"] = (first.count, 0)
    return out


def test_fleet_computations_make_no_round_trip_per_device(
    session, session_factory, settings, clean_database, frozen_clock
):
    tree = build_tree(session)
    units = [tree.ambulance3, tree.pump, tree.command, tree.north_ambulance]
    _add_tablets(session, units, N, 0)
    at_n = _measure(clean_database, session_factory, settings)
    _add_tablets(session, units, 2 * N, N)
    at_3n = _measure(clean_database, session_factory, settings)
    assert all(count > 0 for count, _ in at_n.values())
    # A first run opens the findings of twice as many new devices at 3N: in batched statements.
    # The readiness it causes may update its units' rows in one more shape (the states that
    # changed, or not): a statement or two, never one per device.
    for name in ("offline_check", "certificate_expiry"):
        first_n, first_3n = at_n.pop(f"{name}, first run")[0], at_3n.pop(f"{name}, first run")[0]
        if clean_database.dialect.name == "postgresql":
            assert first_3n <= first_n + 2, name
        # SQLite promises no order for the ids a multi-row INSERT ... RETURNING hands back, so
        # SQLAlchemy inserts new findings and alerts row by row there (in process: no round trip).
    assert {name: count for name, (count, _) in at_3n.items()} == {
        name: count for name, (count, _) in at_n.items()
    }
    # Readiness names its devices in SQL, never as parameters; a job's page lists at most a page.
    assert at_3n["readiness"] == at_n["readiness"]
    assert all(most <= FLEET_PAGE + 10 for _, most in at_3n.values())


def test_offline_check_writes_only_what_changed(
    session, session_factory, settings, clean_database, frozen_clock
):
    tree = build_tree(session)
    _add_tablets(session, [tree.ambulance3, tree.north_ambulance], N, 0)
    ctx = JobContext(session_factory, settings, "host:1")
    run_job(ctx, "offline_check")
    frozen_clock.advance(minutes=15)
    with counted(clean_database) as seen:
        run_job(ctx, "offline_check")
    writes = [s for s in seen.texts if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]
    # Only the scheduler's own JobRun row (inserted, then finished), no device or finding rows.
    assert all("job_runs" in s for s in writes), writes


def test_a_fleet_job_recomputes_readiness_once_not_after_every_page(
    session, session_factory, settings, clean_database, frozen_clock
):
    """Six pages of two devices, each opening findings in three units: their readiness is
    recomputed once, after the last page (one load of the units' published states; PostgreSQL
    loads them again under the readiness lock when something changed), and every unit shows what
    the pages found. Recomputed after every page, it was six loads (twelve)."""
    tree = build_tree(session)
    units = [tree.ambulance3, tree.pump, tree.north_ambulance]
    _add_tablets(session, units, 12, 0)
    ctx = JobContext(session_factory, settings, "host:1")
    run_job(ctx, "readiness_recompute")
    drain(session_factory)  # what setting up the tablets asked for, so only the job's is counted
    with session_factory() as s:
        before = dict(s.execute(select(UnitReadinessState.org_unit_id, UnitReadinessState.state)).all())
    frozen_clock.advance(days=3)  # every tablet offline now: each page opens findings
    with counted(clean_database) as seen:
        assert fleet_check(ctx, ["offline_too_long"], page=2) == {"devices": 12}
    # The published states read (not the ids of rows whose unit is a unit no more).
    loads = [t for t in seen.texts if t.lstrip().startswith("SELECT unit_readiness.org_unit_id, ")]
    assert len(loads) == (2 if clean_database.dialect.name == "postgresql" else 1)
    with session_factory() as s:
        after = dict(s.execute(select(UnitReadinessState.org_unit_id, UnitReadinessState.state)).all())
        assert s.scalar(select(func.count()).select_from(ComplianceFinding)) >= 12
    assert any(after[unit.id] != before[unit.id] for unit in units), (before, after)
    assert all(after[unit.id] != "ready" for unit in units), after


def test_a_fleet_check_holds_one_page_of_devices_at_a_time(
    session, session_factory, settings, clean_database, frozen_clock
):
    """Memory bounded by the page, not the fleet (issue 23: 300 MB at 100,000 devices): while
    the check runs, its readiness drain included, no more than a page of the Device objects it
    loads are alive at once. Reading the fleet at once, or keeping each page's devices until
    the end, held them all."""
    tree = build_tree(session)
    _add_tablets(session, [tree.ambulance3, tree.pump, tree.north_ambulance], 12, 0)
    frozen_clock.advance(days=3)  # every tablet offline: each page has work
    ctx = JobContext(session_factory, settings, "host:1")
    alive: weakref.WeakSet[Device] = weakref.WeakSet()  # an object freed leaves it at once
    most_alive = 0

    def loaded(device: Device, context: Any) -> None:
        nonlocal most_alive
        alive.add(device)
        most_alive = max(most_alive, len(alive))

    event.listen(Device, "load", loaded)
    try:
        assert fleet_check(ctx, ["offline_too_long"], page=2) == {"devices": 12}
    finally:
        event.remove(Device, "load", loaded)
    assert most_alive == 2


def test_fleet_check_stops_between_pages(session, session_factory, settings, frozen_clock):
    """Told to stop (SIGTERM sets the event) before a page starts, the check ends there, with
    the pages before it committed."""
    tree = build_tree(session)
    _add_tablets(session, [tree.ambulance3], 6, 0)
    frozen_clock.advance(days=3)  # every tablet offline: each page has work
    stopping = threading.Event()
    sessions = 0

    def make_session() -> Session:
        nonlocal sessions
        sessions += 1
        if sessions == 3:  # the policies were loaded, the first page committed
            stopping.set()
        return session_factory()

    factory = _FactoryProxy(session_factory, make_session)
    ctx = JobContext(factory, settings, "host:1", stopping=stopping)  # type: ignore[arg-type]
    assert fleet_check(ctx, ["offline_too_long"], page=2) == {"devices": 2, "stopped": True}
    stopping.clear()
    assert fleet_check(ctx, ["offline_too_long"], page=2) == {"devices": 6}


class _SignalAfter(threading.Event):
    """An event that becomes set when asked for the `asks`-th time: SIGTERM arriving at that
    moment of a job (the scheduler's handler sets the same kind of event)."""

    def __init__(self, asks: int) -> None:
        super().__init__()
        self.asks = asks

    def is_set(self) -> bool:
        self.asks -= 1
        if self.asks <= 0:
            self.set()
        return super().is_set()


def test_a_stop_inside_a_page_waits_one_device_not_the_page(session, session_factory, settings, frozen_clock):
    """SIGTERM while a page of the full page size runs: the check ends after the device being
    evaluated (a bounded amount of work, whatever the page size and the rules), commits what it
    did, and the next run takes up the rest."""
    tree = build_tree(session)
    _add_tablets(session, [tree.ambulance3], 6, 0)
    frozen_clock.advance(days=3)  # every tablet offline: one page of FLEET_PAGE holds them all
    # Asked at the top of the loop, then before each device: set before the page's 3rd device.
    ctx = JobContext(session_factory, settings, "host:1", stopping=_SignalAfter(4))
    assert fleet_check(ctx, ["offline_too_long"]) == {"devices": 2, "stopped": True}
    with session_factory() as s:
        flagged = s.scalars(
            select(ComplianceFinding.device_id).where(ComplianceFinding.rule == "offline_too_long")
        ).all()
    assert len(flagged) == 2  # the two devices evaluated were committed with their findings
    ctx = JobContext(session_factory, settings, "host:1", stopping=threading.Event())
    assert fleet_check(ctx, ["offline_too_long"]) == {"devices": 6}
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(ComplianceFinding)) == 6
        assert s.scalar(select(func.count()).select_from(Alert)) == 6  # one alert per finding, no more


class _FactoryProxy:
    """A session factory that counts the sessions made (jobs open one per transaction)."""

    def __init__(self, inner: sessionmaker[Session], make: Callable[[], Session]) -> None:
        self.kw = inner.kw
        self.class_ = inner.class_  # the job drains what its pages asked for with this factory
        self._make = make

    def __call__(self) -> Session:
        return self._make()
