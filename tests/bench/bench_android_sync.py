"""Benchmark (issue 18): the Android agent channel, `/android/v1/sync`, measured as the Apple one is
(tests/bench/bench_device_channel.py): a real `hikeshi serve` on a private PostgreSQL 15 cluster
with pg_stat_statements, driven by spawned simulator processes.

Not part of the default test run. Run it explicitly:

    .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_android_sync.py -m bench -s -q

The agents are tests.support.android_agent.ReferenceAgent (the protocol's reference client): each
enrolls over HTTP with its own 2048-bit key (POST /android/v1/enroll) and syncs once with its
first inventory; then every request is signed with a fresh nonce and timestamp. Workloads:

- android-empty: a sync with nothing to report and nothing waiting (no policy, no commands back);
- android-command: a DeviceInformation queued for every tablet (REFRESH_INVENTORY on Android),
  then sync → the command; sync with its acknowledgement and the inventory → nothing.

Environment: HIKESHI_BENCH_ANDROID_DEVICES [300], HIKESHI_BENCH_WORKERS [1,2,4],
HIKESHI_BENCH_ROUNDS [2], HIKESHI_BENCH_COMMAND_ROUNDS [1], HIKESHI_BENCH_CLIENT_PROCESSES [2],
HIKESHI_BENCH_CLIENT_THREADS [8]. Figures and how they are counted: see bench_device_channel.py.
Long-poll wake-ups (/android/v1/wait) are not measured here. As for Apple, the stack's floor
(tests/bench/device_sim/floor.py: an empty sync answered after a JSON decode and one Core read of
the device) is measured with the same agents and workers, and the CPU per request printed as a
multiple of it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from enrollment import tokens
from mdm.ground.db import transaction
from mdm.ground.models import OrgUnit
from tests.bench import channel_bench as channel
from tests.bench.device_sim.android import ANDROID_COMMAND, ANDROID_EMPTY, AgentRecord, enroll_agents
from tests.bench.device_sim.fleet import in_processes
from tests.bench.device_sim.floor import running_floor
from tests.bench.device_sim.report import HEADER, LEGEND, Measured
from tests.bench.device_sim.stage import ADMIN, Stage, cancel_pending, stage
from tests.faults.harness import running_server

pytestmark = pytest.mark.bench

DEVICES = int(os.environ.get("HIKESHI_BENCH_ANDROID_DEVICES", "300"))


@pytest.fixture(scope="module")
def bench_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    with stage(tmp_path_factory.mktemp("android-sync"), 0) as built:
        yield built


def _android_token(built: Stage) -> str:
    with transaction(built.factory) as session:
        unit = session.scalars(select(OrgUnit)).first()
        assert unit is not None
        created = tokens.create_token(
            session,
            {
                "org_unit_id": unit.id,
                "max_uses": DEVICES,
                "platform": "android",
                "expires_in": timedelta(days=1),
            },
            actor=ADMIN,
        )
    return created.secret


def test_android_sync(bench_stage: Stage, tmp_path: Path) -> None:
    built = bench_stage
    secret = _android_token(built)
    rows: list[Measured] = []
    records: list[AgentRecord] = []
    floors: list[Measured] = []
    for workers in channel.WORKERS:
        with running_server(
            built.settings, built.factory, tmp_path, "--workers", str(workers), "--no-scheduler"
        ) as server:
            if not records:
                shares = [
                    DEVICES // channel.PROCESSES + (1 if i < DEVICES % channel.PROCESSES else 0)
                    for i in range(channel.PROCESSES)
                ]
                parts = in_processes(
                    enroll_agents,
                    channel.PROCESSES,
                    [server.url] * channel.PROCESSES,
                    [secret] * channel.PROCESSES,
                    shares,
                )
                records = [r for part in parts for r in part]
                cancel_pending(built.factory)

            def window(
                workload: str,
                rounds: int,
                server: Any = server,
                workers: int = workers,
                records: list[AgentRecord] = records,
            ) -> Measured:
                return channel.window(
                    built, server, records, workers, workload, rounds, command=workload == ANDROID_COMMAND
                )

            rows.append(window(ANDROID_EMPTY, channel.ROUNDS))
            rows.extend(channel.command_rounds(built, lambda window=window: window(ANDROID_COMMAND, 1)))
        with running_floor(
            built.settings.database_url, workers, channel.FLOOR_THREADS, tmp_path / f"floor-{workers}.log"
        ) as floor:
            rounds = channel.ROUNDS
            measured = channel.window(built, floor, records, workers, ANDROID_EMPTY, rounds, command=False)
            floors.append(replace(measured, workload=channel.FLOOR))

    lines = [
        "",
        f"Android agent channel (/android/v1/sync), {DEVICES} enrolled tablets (RSA 2048), PostgreSQL 15 "
        f"(private cluster, fsync on), {channel.PROCESSES} simulator processes x {channel.THREADS} threads, "
        f"{os.cpu_count()} CPUs ({platform.machine()})",
        f"  android-empty = sync with nothing to report -> nothing, {channel.ROUNDS} per tablet; "
        "android-command = sync -> REFRESH_INVENTORY, sync with result + inventory -> nothing, "
        f"{channel.COMMAND_ROUNDS} per tablet",
        *LEGEND,
        HEADER,
        *[row.line() for row in rows],
        *[row.line() for row in floors],
        "",
        "Against the goal of issue 18 (stated for Apple; the same figures for Android):",
        *channel.judged(rows, ANDROID_EMPTY),
        "Against the stack's floor (the same agents' empty syncs answered by gunicorn + Flask after a "
        "JSON decode and one SQLAlchemy Core read of the device; same workers, same run):",
        *channel.against_floor(rows, floors),
        "Reproduce:",
        f"  HIKESHI_BENCH_ANDROID_DEVICES={DEVICES} "
        f"HIKESHI_BENCH_WORKERS={','.join(map(str, channel.WORKERS))} "
        f"HIKESHI_BENCH_ROUNDS={channel.ROUNDS} HIKESHI_BENCH_COMMAND_ROUNDS={channel.COMMAND_ROUNDS} "
        f"HIKESHI_BENCH_CLIENT_PROCESSES={channel.PROCESSES} HIKESHI_BENCH_CLIENT_THREADS={channel.THREADS} "
        ".venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py "
        "tests/bench/bench_android_sync.py -m bench -s -q",
    ]
    print("\n".join(lines))
