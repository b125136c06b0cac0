"""Benchmark (issue 18): the Apple device channel of a real `hikeshi serve` on PostgreSQL, driven by
Hikeshi's own multi-process device simulator (tests/bench/device_sim).

Not part of the default test run. Run it explicitly (it starts its own PostgreSQL 15 cluster with
pg_stat_statements; HIKESHI_TEST_DATABASE_URL is not used):

    .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_device_channel.py -m bench -s -q

Environment (defaults in brackets):

- HIKESHI_BENCH_DEVICES [1000]: enrolled iPads; a comma-separated list runs each fleet size in
  turn, in one command ("1000,10000": the issue's two sizes), each with its own cluster.
- HIKESHI_BENCH_SCEP_DEVICES [10]: of those, enrolled over the real door (profile download + SCEP
  PKIOperation); the others get their identity through the issuance service the SCEP door calls.
- HIKESHI_BENCH_WORKERS [1,2,4]: `hikeshi serve --workers` values, one server each.
- HIKESHI_BENCH_ROUNDS [2]: empty check-ins per device. HIKESHI_BENCH_COMMAND_ROUNDS [1]: command
  cycles per device (a DeviceInformation is queued for every device before each round).
- HIKESHI_BENCH_CLIENT_PROCESSES [2], HIKESHI_BENCH_CLIENT_THREADS [8]: simulator processes and
  threads in each (so 16 devices talk at once); each thread keeps one HTTP connection.
- HIKESHI_BENCH_PROFILE_DIR [unset]: py-spy over the server during each measured window, one raw
  file per window (tests/bench/device_sim/profile.py; Android's benchmark takes it too).

Each request is signed at the moment it is sent (2048-bit RSA, SHA-256, detached CMS over the
exact body). Reported per worker count and workload: requests/s, p50/p99 latency, server CPU per
request (user + system time of the `hikeshi serve` process tree, gunicorn master and workers, from
/proc before and after the window; the scheduler is off), PostgreSQL CPU per request (the private
cluster's processes, the same way), and SQL statements per request: `calls` in pg_stat_statements
(track = top) of the role the server connects as, in the benchmark database, after minus before;
"work" excludes BEGIN/COMMIT/ROLLBACK/SAVEPOINT, "all" includes them.

The same run measures the stack's floor (tests/bench/device_sim/floor.py: gunicorn and Flask
reading the body, decoding the plist and reading the device's row, nothing else) with the same
simulator, workers and empty check-ins, and prints Hikeshi's CPU per request as a multiple of it:
the machine's speed drifts during a day, the ratio much less.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bench import channel_bench as channel
from tests.bench.device_sim.cycles import COMMAND, EMPTY
from tests.bench.device_sim.fleet import (
    DeviceRecord,
    enroll_over_scep,
    enroll_through_issuance,
    first_checkins,
)
from tests.bench.device_sim.floor import running_floor
from tests.bench.device_sim.report import HEADER, LEGEND, Measured
from tests.bench.device_sim.stage import Stage, cancel_pending, stage
from tests.faults.harness import running_server

pytestmark = pytest.mark.bench

FLEET_SIZES = [int(n) for n in os.environ.get("HIKESHI_BENCH_DEVICES", "1000").split(",")]
SCEP_LIMIT = int(os.environ.get("HIKESHI_BENCH_SCEP_DEVICES", "10"))

COMMAND_LINE = (
    "HIKESHI_BENCH_DEVICES={devices} HIKESHI_BENCH_WORKERS={workers} HIKESHI_BENCH_ROUNDS={rounds} "
    "HIKESHI_BENCH_COMMAND_ROUNDS={command_rounds} HIKESHI_BENCH_CLIENT_PROCESSES={processes} "
    "HIKESHI_BENCH_CLIENT_THREADS={threads} HIKESHI_BENCH_SCEP_DEVICES={scep} "
    ".venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py "
    "tests/bench/bench_device_channel.py -m bench -s -q"
)


@pytest.fixture(scope="module", params=FLEET_SIZES, ids=lambda n: f"{n}-devices")
def bench_stage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stage, int]]:
    with stage(tmp_path_factory.mktemp("device-channel"), request.param) as built:
        yield built, request.param


def _enroll(built: Stage, tmp: Path, devices: int) -> tuple[list[DeviceRecord], list[str]]:
    notes = []
    scep_devices = min(devices, SCEP_LIMIT)
    with running_server(built.settings, built.factory, tmp, "--workers", "2", "--no-scheduler") as server:
        scep, scep_seconds = enroll_over_scep(server.url, built.token_secret, built.topic, scep_devices)
        rest, issuance_seconds = enroll_through_issuance(
            built.factory,
            built.cluster.admin_url,
            built.settings,
            [t.token.id for t in built.tokens],
            built.topic,
            devices - scep_devices,
            channel.PROCESSES,
        )
        records = scep + rest
        checkin_seconds = first_checkins(server.url, records, channel.PROCESSES)
    cancelled = cancel_pending(built.factory)
    if scep_devices:
        notes.append(
            f"{scep_devices} iPads over the real door (profile download + SCEP, one after the other): "
            f"{scep_devices / scep_seconds:.1f} devices/s"
        )
    notes.append(
        f"{len(rest)} iPads through the issuance service the SCEP door calls (key generation in "
        f"{channel.PROCESSES} processes + issuance): {len(rest) / issuance_seconds:.1f} devices/s"
        if rest
        else "no iPads through the issuance service"
    )
    notes.append(
        f"Authenticate + TokenUpdate for all {len(records)} over HTTP ({channel.PROCESSES} processes): "
        f"{len(records) / checkin_seconds:.1f} devices/s; {cancelled} first-inventory commands cancelled"
    )
    return records, notes


def _warm_up(url: str, records: list[DeviceRecord]) -> None:
    """A few check-ins first, so imports and caches of fresh workers are not in the window."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for record in records[:20]:
            ipad = record.ipad()
            assert ipad.connect(http, ipad.idle_body()).status_code == 200


def _window(
    built: Stage, server: Any, records: list[DeviceRecord], workers: int, workload: str, rounds: int
) -> Measured:
    return channel.window(built, server, records, workers, workload, rounds, command=workload == COMMAND)


def test_device_channel(bench_stage: tuple[Stage, int], tmp_path: Path) -> None:
    built, devices = bench_stage
    started = time.monotonic()
    records, notes = _enroll(built, tmp_path, devices)
    notes.append(f"fleet seeded (enrollment and first check-ins) in {time.monotonic() - started:.0f} s")
    rows: list[Measured] = []
    floors: list[Measured] = []
    for workers in channel.WORKERS:
        with running_server(
            built.settings, built.factory, tmp_path, "--workers", str(workers), "--no-scheduler"
        ) as server:
            _warm_up(server.url, records)
            rows.append(_window(built, server, records, workers, EMPTY, channel.ROUNDS))

            def one_cycle(server: Any = server, workers: int = workers) -> Measured:
                return _window(built, server, records, workers, COMMAND, 1)

            # Faithful: every queued DeviceInformation is acknowledged in the database.
            if channel.COMMAND_ROUNDS and not any(row.workload == channel.FIRST_COMMAND for row in rows):
                rows.append(channel.first_command_round(built, one_cycle))
            rows.extend(channel.command_rounds(built, one_cycle))
        with running_floor(
            built.settings.database_url, workers, channel.FLOOR_THREADS, tmp_path / f"floor-{workers}.log"
        ) as floor:
            _warm_up(floor.url, records)
            measured = _window(built, floor, records, workers, EMPTY, channel.ROUNDS)
            floors.append(replace(measured, workload=channel.FLOOR))

    lines = [
        "",
        f"Apple device channel, {devices} enrolled iPads (RSA 2048), PostgreSQL 15 (private cluster, "
        f"fsync on), {channel.PROCESSES} simulator processes x {channel.THREADS} threads, "
        f"{os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()})",
        *[f"  enrollment: {note}" for note in notes],
        f"  empty = Idle -> empty answer, {channel.ROUNDS} per device; command = Idle -> DeviceInformation, "
        f"Acknowledged -> empty, {channel.COMMAND_ROUNDS} per device (2 requests per cycle), after "
        f"one '{channel.FIRST_COMMAND}' cycle per device: the first inventory since enrollment, whose "
        "answer queues one-off follow-ups (reported, not judged)",
        *LEGEND,
        HEADER,
        *[row.line() for row in rows],
        *[row.line() for row in floors],
        "",
        "Against the goal of issue 18:",
        *channel.judged(rows, EMPTY),
        "Against the stack's floor (the same simulator's empty check-ins answered by gunicorn + Flask "
        "after a plist decode and one SQLAlchemy Core read of the device row; same workers, same run):",
        *channel.against_floor(rows, floors),
    ]
    lines.append("Reproduce:")
    lines.append(
        "  "
        + COMMAND_LINE.format(
            devices=",".join(map(str, FLEET_SIZES)),
            workers=",".join(map(str, channel.WORKERS)),
            rounds=channel.ROUNDS,
            command_rounds=channel.COMMAND_ROUNDS,
            processes=channel.PROCESSES,
            threads=channel.THREADS,
            scep=SCEP_LIMIT,
        )
    )
    print("\n".join(lines))
