"""Seed a prefecture-sized fleet for the issue-23 benchmark (tests/bench/bench_fleet_scale.py).

    .venv/bin/python -m tests.bench.fleet_seed \\
        postgresql+psycopg://postgres@127.0.0.1:5432/fleet 100000 [UNITS]

Migrates the database, then writes: HQ → 20 stations → 5 units each (100 units, default plans; or
UNITS units in bulk under 100 stations, a few tablets each as a real 隊 has); N enrolled devices
(asset tag FD-000001…, serial DMQ…, a user each; one in 33 not seen for 2 to 30 days, over the 24 h
offline limit, the others within 20 hours); 10 installed apps per device (1 million at 100,000); an
identity certificate per device (1 in 20 within its 30-day warning window); device facts with a
battery level; one open compliance finding for 37 % of the devices (and their device_compliance
rows, the others "ok"). Set-based: COPY on PostgreSQL, executemany batches of 10,000 on SQLite; an
empty database is expected.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, text

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.db import make_engine, make_session_factory, transaction, upgrade_database
from mdm.ground.models import (
    ComplianceFinding,
    Device,
    DeviceCertificate,
    DeviceCompliance,
    DeviceFacts,
    EnrollmentState,
    InstalledApp,
    OrgUnit,
)
from mdm.services import orgunits

STATIONS = 20
UNITS_PER_STATION = 5
APPS_PER_DEVICE = 10
FINDING_SHARE = 0.37
BATCH = 10_000


def asset_tag(n: int) -> str:
    return f"FD-{n:06d}"


def serial(n: int) -> str:
    return f"DMQ{n:09d}"


def user(n: int) -> str:
    return f"隊員{n:06d}"


def _tree(engine: Engine, units_wanted: int) -> list[int]:
    if units_wanted > STATIONS * UNITS_PER_STATION:
        return _wide_tree(engine, units_wanted)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        if s.scalar(select(OrgUnit.id).limit(1)) is not None:
            raise SystemExit("the database already holds org units: seed an empty one")
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "県消防本部", "code": "HQ"}, actor=SYSTEM)
        units: list[int] = []
        for n in range(STATIONS):
            station = orgunits.create_unit(
                s,
                {"kind": "station", "name_ja": f"第{n + 1}署", "code": f"ST{n}", "parent_id": hq.id},
                actor=SYSTEM,
            )
            for k in range(UNITS_PER_STATION):
                unit = orgunits.create_unit(
                    s,
                    {
                        "kind": "unit",
                        "unit_type": "ambulance" if k % 2 == 0 else "pump",
                        "name_ja": f"第{n + 1}署{k + 1}隊",
                        "code": f"U{n:02d}{k}",
                        "parent_id": station.id,
                    },
                    actor=SYSTEM,
                )
                units.append(unit.id)
    return units


def _wide_tree(engine: Engine, units_wanted: int) -> list[int]:
    """Many units (a few tablets each, as a real 隊 has), inserted in bulk under 100 stations."""
    now = clock.now()
    with engine.begin() as conn:
        hq = conn.execute(
            insert(OrgUnit).returning(OrgUnit.id),
            {"kind": "hq", "name_ja": "県消防本部", "code": "HQ", "created_at": now, "updated_at": now},
        ).scalar_one()
        stations = list(
            conn.execute(
                insert(OrgUnit).returning(OrgUnit.id, sort_by_parameter_order=True),
                [
                    {
                        "kind": "station",
                        "name_ja": f"第{n + 1}署",
                        "code": f"ST{n}",
                        "parent_id": hq,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n in range(100)
                ],
            ).scalars()
        )
        return list(
            conn.execute(
                insert(OrgUnit).returning(OrgUnit.id, sort_by_parameter_order=True),
                [
                    {
                        "kind": "unit",
                        "unit_type": "ambulance" if k % 2 == 0 else "pump",
                        "name_ja": f"{k + 1}隊",
                        "code": f"U{k:05d}",
                        "parent_id": stations[k % 100],
                        "created_at": now,
                        "updated_at": now,
                    }
                    for k in range(units_wanted)
                ],
            ).scalars()
        )


def _copy(engine: Engine, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY on PostgreSQL (one round trip per table), executemany batches elsewhere."""
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur:  # type: ignore[attr-defined]
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    statement = text(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in rows:
            batch.append(dict(zip(columns, row, strict=True)))
            if len(batch) >= BATCH:
                conn.execute(statement, batch)
                batch = []
        if batch:
            conn.execute(statement, batch)


def seed(url: str, devices: int, *, units: int = 100, out: Any = sys.stdout) -> dict[str, float]:
    upgrade_database(url)
    engine = make_engine(url)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    units = _tree(engine, units)
    now = clock.now()
    with engine.begin() as conn:
        conn.execute(
            insert(Device),
            [
                {
                    "udid": str(uuid.UUID(int=n + 1)).upper(),
                    "serial_number": serial(n),
                    "asset_tag": asset_tag(n),
                    "assigned_user": user(n),
                    "platform": "apple",
                    "device_name": f"救急タブレット {n}",
                    "model_name": "iPad",
                    "product_name": "iPad13,18",
                    "is_supervised": True,
                    "enrollment_state": EnrollmentState.ENROLLED,
                    "org_unit_id": units[n % len(units)],
                    "created_at": now,
                    "enrolled_at": now - timedelta(days=60),
                    "last_seen_at": now - _unseen_for(n),
                }
                for n in range(devices)
            ],
        )
    timings["devices"] = time.perf_counter() - t0
    with engine.connect() as conn:
        ids = list(conn.execute(select(Device.id).order_by(Device.id)).scalars())
    tables: list[tuple[str, Any, list[str], Any]] = [
        (
            "installed_apps",
            InstalledApp,
            ["device_id", "identifier", "name", "short_version", "first_seen_at", "updated_at"],
            lambda: (
                (i, f"jp.fire.app{k}", f"App {k}", "1.0", now, now)
                for i in ids
                for k in range(APPS_PER_DEVICE)
            ),
        ),
        (
            "device_certificates",
            DeviceCertificate,
            [
                "fingerprint_sha256",
                "device_id",
                "subject",
                "issuer",
                "serial_hex",
                "not_before",
                "not_after",
                "pem",
                "created_at",
                "purpose",
            ],
            lambda: (
                (
                    f"{i:064x}",
                    i,
                    f"CN=device {i}",
                    "CN=Hikeshi CA",
                    f"{i:x}",
                    now - timedelta(days=300),
                    now + timedelta(days=10 if i % 20 == 0 else 400),
                    "-",
                    now,
                    "mdm_identity",
                )
                for i in ids
            ),
        ),
        (
            "device_facts",
            DeviceFacts,
            ["device_id", "battery_level", "raw_device_information", "raw_security_info"],
            lambda: ((i, 0.2 + (i % 80) / 100, "{}", "{}") for i in ids),
        ),
        (
            "compliance_findings",
            ComplianceFinding,
            ["device_id", "rule", "subject", "severity", "message", "details", "opened_at", "last_seen_at"],
            lambda: (
                (i, "os_outdated", "", "warning", "OS が古い / OS outdated", "{}", now, now)
                for i in ids
                if _has_finding(i)
            ),
        ),
        (
            "device_compliance",
            DeviceCompliance,
            ["device_id", "state", "open_findings", "evaluated_at"],
            lambda: ((i, "warning" if _has_finding(i) else "ok", int(_has_finding(i)), now) for i in ids),
        ),
    ]
    for name, _model, columns, rows in tables:
        t = time.perf_counter()
        _copy(engine, name, columns, rows())
        timings[name] = time.perf_counter() - t
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    timings["total"] = time.perf_counter() - t0
    engine.dispose()
    print(
        f"seeded {devices} devices, {devices * APPS_PER_DEVICE} apps, "
        f"{sum(1 for i in ids if _has_finding(i))} findings in {timings['total']:.1f} s "
        f"({', '.join(f'{k} {v:.1f} s' for k, v in timings.items() if k != 'total')})",
        file=out,
    )
    return timings


def _unseen_for(n: int) -> timedelta:
    """Most tablets checked in within the last 20 hours; one in 33 not for 2 to 30 days."""
    if n % 33 == 0:
        return timedelta(days=2 + n % 28)
    return timedelta(minutes=(n * 37) % (20 * 60))


def _has_finding(device_id: int) -> bool:
    return (device_id * 37) % 100 < FINDING_SHARE * 100


if __name__ == "__main__":
    seed(
        sys.argv[1],
        int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
        units=int(sys.argv[3]) if len(sys.argv) > 3 else 100,
    )
