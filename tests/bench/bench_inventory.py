"""Benchmark: inventory of 10,000 simulated devices, then the devices list filtered by compliance.

Not part of the default test run (pytest collects test_*.py only). Run it explicitly:

    HIKESHI_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/test \\
        .venv/bin/pytest tests/bench/bench_inventory.py -o python_files='bench_*.py' -s -q

HIKESHI_BENCH_DEVICES changes the fleet size (default 10000). Results (DeviceInformation,
SecurityInfo, InstalledApplicationList) are bulk-inserted as raw plists, then processed by the
real parsers, a transaction per batch of devices, in two ways measured in the same run on
alternate batches (so both see the same database size):

- baseline: compliance evaluated after every result, as a check-in carrying one result does;
- batched: evaluated once per device per transaction, at commit (mdm.services.inventory.events).

Both are reported as ms per result and the batched one as a ratio against the baseline. The
filtered list is reported as a ratio against the unfiltered first page measured in the same run
(DESIGN.md: ratios, not timings).
"""

from __future__ import annotations

import itertools
import os
import plistlib
import time
import uuid

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import joinedload

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.models import (
    Command,
    CommandResult,
    CommandStatus,
    Device,
    DeviceCompliance,
    EnrollmentState,
    Severity,
)
from mdm.services.compliance.evaluation import devices_by_compliance
from mdm.services.compliance.sources import APP_POLICY_SOURCES, AppPolicy
from mdm.services.inventory.events import settle_inventory
from mdm.services.inventory.parsers.applications import parse_installed_applications
from mdm.services.inventory.parsers.device_information import parse_device_information
from mdm.services.inventory.parsers.security_info import parse_security_info
from mdm.services.unit_policy import set_unit_policy

pytestmark = pytest.mark.bench

DEVICES = int(os.environ.get("HIKESHI_BENCH_DEVICES", "10000"))
BATCH = 500
DEVICES_PER_BATCH = 100  # 300 results a transaction
BLOCKED = "com.example.fungame"
PARSERS = {
    "DeviceInformation": parse_device_information,
    "SecurityInfo": parse_security_info,
    "InstalledApplicationList": parse_installed_applications,
}


def _answers(n: int) -> dict[str, dict]:
    installed = [
        {"Identifier": f"jp.fire.app{k}", "Name": f"App {k}", "ShortVersion": "1.0", "Version": "1"}
        for k in range(25)
    ]
    if n % 100 == 0:  # one tablet in a hundred has the game
        installed.append({"Identifier": BLOCKED, "Name": "Fun Game", "ShortVersion": "2.0"})
    return {
        "DeviceInformation": {
            "QueryResponses": {
                "OSVersion": "17.5.1" if n % 10 else "16.7",
                "SerialNumber": f"BENCH{n:07d}",
                "BatteryLevel": (n % 100) / 100,
                "IsSupervised": True,
            }
        },
        "SecurityInfo": {"SecurityInfo": {"PasscodePresent": n % 50 != 0, "PasscodeCompliant": True}},
        "InstalledApplicationList": {"InstalledApplicationList": installed},
    }


def _bulk_insert(session) -> None:
    now = clock.now()
    for start in range(0, DEVICES, BATCH):
        numbers = range(start, min(start + BATCH, DEVICES))
        session.execute(
            insert(Device),
            [
                {
                    "udid": f"BENCH-{n:08d}",
                    "platform": "apple",
                    "enrollment_state": EnrollmentState.ENROLLED,
                    "created_at": now,
                    "enrolled_at": now,
                    "last_seen_at": now,
                    "is_supervised": True,
                }
                for n in numbers
            ],
        )
        ids = dict(session.execute(select(Device.udid, Device.id).where(Device.udid.like("BENCH-%"))).all())
        numbers_by_id = {ids[f"BENCH-{n:08d}"]: n for n in numbers}
        commands = []
        for n in numbers:
            for kind in PARSERS:
                commands.append(
                    {
                        "uuid": str(uuid.uuid4()).upper(),
                        "device_id": ids[f"BENCH-{n:08d}"],
                        "request_type": kind,
                        "params": {},
                        "priority": -10,
                        "status": CommandStatus.ACKNOWLEDGED,
                        "requested_by": "bench",
                        "queued_at": now,
                        "acknowledged_at": now,
                    }
                )
        session.execute(insert(Command), commands)
        by_uuid = dict(
            session.execute(
                select(Command.uuid, Command.id).where(Command.uuid.in_([c["uuid"] for c in commands]))
            ).all()
        )
        results = []
        for c in commands:
            n = numbers_by_id[c["device_id"]]
            report = {"UDID": f"BENCH-{n:08d}", "CommandUUID": c["uuid"], "Status": "Acknowledged"}
            report.update(_answers(n)[c["request_type"]])
            results.append(
                {
                    "command_id": by_uuid[c["uuid"]],
                    "status": "Acknowledged",
                    "raw": plistlib.dumps(report),
                    "received_at": now,
                }
            )
        session.execute(insert(CommandResult), results)
        session.commit()


def _process(session_factory) -> dict[str, list[float]]:
    """Process every result, alternating the baseline and batched ways per batch of devices;
    returns, per way, the seconds each batch took and how many results it held."""
    spent: dict[str, list[float]] = {"baseline": [0.0, 0], "batched": [0.0, 0]}
    last_device = 0
    for number in itertools.count():
        way = "baseline" if number % 2 == 0 else "batched"
        with session_factory() as session:
            devices = session.scalars(
                select(Device.id).where(Device.id > last_device).order_by(Device.id).limit(DEVICES_PER_BATCH)
            ).all()
            if not devices:
                return spent
            rows = session.execute(
                select(Command, CommandResult.raw)
                .join(CommandResult, CommandResult.command_id == Command.id)
                .options(joinedload(Command.device))  # a check-in has its device at hand
                .where(Command.device_id.in_(devices))
                .order_by(CommandResult.id)
            ).all()
            started = time.perf_counter()
            for command, raw in rows:
                PARSERS[command.request_type](session, command, plistlib.loads(raw))
                if way == "baseline":
                    settle_inventory(session)  # evaluate now, before the next result
            session.commit()
            spent[way][0] += time.perf_counter() - started
            spent[way][1] += len(rows)
            last_device = devices[-1]
    return spent


def _best_of(fn, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def test_inventory_of_a_fleet_and_compliance_filter(session_factory, engine):
    def policy(session, device):
        return AppPolicy(blocked=frozenset({BLOCKED}))

    APP_POLICY_SOURCES.connect(session_factory, policy)
    with session_factory() as session:
        # One tablet in ten runs an OS below the fleet minimum: a warning.
        set_unit_policy(session, SYSTEM, None, minimum_os_version="17.0")
        session.commit()
        started = time.perf_counter()
        _bulk_insert(session)
        inserted = time.perf_counter() - started
    started = time.perf_counter()
    spent = _process(session_factory)
    processed = time.perf_counter() - started

    with session_factory() as session:
        states = dict(
            session.execute(
                select(DeviceCompliance.state, func.count()).group_by(DeviceCompliance.state)
            ).all()
        )
        assert sum(states.values()) == DEVICES
        critical = devices_by_compliance(session, [Severity.CRITICAL], limit=500)
        assert len(critical) == min(500, len(range(0, DEVICES, 50)))  # no passcode, or the game

        def baseline() -> None:
            session.scalars(select(Device).order_by(Device.id).limit(500)).all()

        def filtered() -> None:
            devices_by_compliance(session, [Severity.CRITICAL], limit=500)

        def filtered_warning() -> None:
            devices_by_compliance(session, [Severity.WARNING], limit=500)

        base, crit, warn = _best_of(baseline), _best_of(filtered), _best_of(filtered_warning)
    per_result = {way: seconds / count * 1000 for way, (seconds, count) in spent.items()}
    print(
        f"\n[bench] {engine.dialect.name}: {DEVICES} devices, states {states}\n"
        f"[bench] bulk insert {inserted:.1f} s; parse + evaluate {processed:.1f} s "
        f"({processed / (3 * DEVICES) * 1000:.2f} ms per result, {3 * DEVICES / processed:.0f} results/s)\n"
        f"[bench] evaluated after every result (baseline) {per_result['baseline']:.2f} ms per result; "
        f"once per device per transaction {per_result['batched']:.2f} ms per result "
        f"(x{per_result['batched'] / per_result['baseline']:.2f})\n"
        f"[bench] first page unfiltered {base * 1000:.1f} ms (baseline); "
        f"critical {crit * 1000:.1f} ms (x{crit / base:.2f}); "
        f"warning {warn * 1000:.1f} ms (x{warn / base:.2f})"
    )
    assert crit < 1.0 and warn < 1.0
