"""Benchmark (issue 18): enrollment rate, devices per second, against a real `hikeshi serve` on a
private PostgreSQL 15 cluster (tests/bench/device_sim).

Not part of the default test run. Run it explicitly:

    .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_enrollment_rate.py -m bench -s -q

Every iPad goes the whole way over HTTP: GET /enroll/<token> (the signed profile with a fresh
challenge), SCEP PKIOperation (PKCSReq with a new 2048-bit key, AES-128 envelope), Authenticate and
TokenUpdate signed with the issued identity. HIKESHI_BENCH_ENROLL_DEVICES [60] iPads over
HIKESHI_BENCH_CLIENT_PROCESSES [2] simulator processes, one after the other in each, against
`hikeshi serve --workers` HIKESHI_BENCH_ENROLL_WORKERS [2]. Reported: devices/s, seconds per device
(p50/p99, the device's own key generation included), server CPU per device.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mdm.ground.models import Device, EnrollmentState
from tests.bench.device_sim.fleet import chunks, enroll_whole, in_processes
from tests.bench.device_sim.measure import percentile, tree_cpu_seconds
from tests.bench.device_sim.stage import stage
from tests.faults.harness import running_server

pytestmark = pytest.mark.bench

DEVICES = int(os.environ.get("HIKESHI_BENCH_ENROLL_DEVICES", "60"))
PROCESSES = int(os.environ.get("HIKESHI_BENCH_CLIENT_PROCESSES", "2"))
WORKERS = int(os.environ.get("HIKESHI_BENCH_ENROLL_WORKERS", "2"))


def test_enrollment_rate(tmp_path: Path) -> None:
    with stage(tmp_path, DEVICES) as built:
        with running_server(
            built.settings, built.factory, tmp_path, "--workers", str(WORKERS), "--no-scheduler"
        ) as server:
            shares = [len(part) for part in chunks(list(range(DEVICES)), PROCESSES)]
            cpu_before = tree_cpu_seconds(server.proc.pid)
            started = time.perf_counter()
            parts = in_processes(
                enroll_whole,
                PROCESSES,
                [server.url] * len(shares),
                [built.token_secret] * len(shares),
                [built.topic] * len(shares),
                shares,
            )
            seconds = time.perf_counter() - started
            cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
        with built.factory() as session:
            enrolled = session.scalar(
                select(func.count())
                .select_from(Device)
                .where(Device.enrollment_state == EnrollmentState.ENROLLED)
            )
    per_device = [s for _, times in parts for s in times]
    assert enrolled == DEVICES == len(per_device)
    print(
        "\n".join(
            [
                "",
                f"Enrollment (profile download + SCEP + Authenticate + TokenUpdate), {DEVICES} iPads, "
                f"{PROCESSES} simulator processes, hikeshi serve --workers {WORKERS}, PostgreSQL 15 "
                f"(private cluster), {os.cpu_count()} CPUs (shared)",
                f"  {DEVICES / seconds:.2f} devices/s; per device p50 {percentile(per_device, 0.5):.2f} s, "
                f"p99 {percentile(per_device, 0.99):.2f} s; "
                f"server CPU {cpu / DEVICES * 1000:.0f} ms per device",
                "Reproduce:",
                f"  HIKESHI_BENCH_ENROLL_DEVICES={DEVICES} HIKESHI_BENCH_CLIENT_PROCESSES={PROCESSES} "
                f"HIKESHI_BENCH_ENROLL_WORKERS={WORKERS} .venv/bin/pytest -p no:cacheprovider "
                "-o python_files=bench_*.py tests/bench/bench_enrollment_rate.py -m bench -s -q",
            ]
        )
    )
