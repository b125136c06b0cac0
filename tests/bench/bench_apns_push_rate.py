"""Benchmark (issue 18): pushes per second from one Hikeshi process to the APNs test server.

Not part of the default test run. Run it explicitly (SQLite, then PostgreSQL):

    .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_apns_push_rate.py -m bench -s -q
    HIKESHI_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_apns_push_rate.py -m bench -s -q

HIKESHI_BENCH_PUSHES [3000] enrolled iPads, one push each: `dispatcher.push_now(ids)` of the app
(the real PushDispatcher and APNs client: HTTP/2 over TLS with the imported push certificate, a pool
of HIKESHI_BENCH_APNS_CONNECTIONS [4] connections), timed from the call to the APNs stand-in
receiving the last push. The stand-in (tests/bench/apns_stand_in) runs in a spawned process of its
own. Reported: pushes/s, the CPU time of this process per push (and the rate that CPU alone would
allow: on a shared machine the wall-clock rate also counts other processes' turns), and how many
HTTP/2 connections and concurrent streams the stand-in saw. Goal (issue 18): >= 2,000 pushes/s.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from mdm.ground.audit import SYSTEM
from mdm.ground.db import transaction
from mdm.services import orgunits
from tests.bench.apns_stand_in import pushing_app, seed_ipads

pytestmark = pytest.mark.bench

PUSHES = int(os.environ.get("HIKESHI_BENCH_PUSHES", "3000"))
CONNECTIONS = int(os.environ.get("HIKESHI_BENCH_APNS_CONNECTIONS", "4"))
WARMUP = 20
GOAL_PER_SECOND = 2000


def _database_env() -> str:
    url = os.environ.get("HIKESHI_TEST_DATABASE_URL")
    return f"HIKESHI_TEST_DATABASE_URL={url} " if url else ""


def test_pushes_per_second(settings: Any) -> None:
    with pushing_app(settings, apns_connections=CONNECTIONS) as (app, stand_in):
        hikeshi = app.extensions["hikeshi"]
        with transaction(hikeshi.session_factory) as s:
            hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=SYSTEM).id
        ids = seed_ipads(hikeshi.session_factory, stand_in.credentials.topic, WARMUP + PUSHES, hq, "PSH")
        # Warm-up: TLS handshake, the push certificate loaded, the loop started.
        assert all(o.status == 200 for o in hikeshi.dispatcher.push_now(ids[:WARMUP], timeout=60))
        stand_in.wait(WARMUP, 60)
        stand_in.clear()

        cpu_before = time.process_time()
        stand_in_before = stand_in.cpu()
        started = time.monotonic()
        outcomes = hikeshi.dispatcher.push_now(ids[WARMUP:], timeout=600)
        returned = time.monotonic()
        cpu = time.process_time() - cpu_before
        received = stand_in.wait(PUSHES, 600)
        stand_in_cpu = stand_in.cpu() - stand_in_before
        assert hikeshi.dispatcher.wait_idle(60)
        dialect = hikeshi.engine.dialect.name

    assert received.count == PUSHES and received.tokens == PUSHES
    assert sorted(o.status for o in outcomes) == [200] * PUSHES
    seconds = received.last_at - started
    rate = PUSHES / seconds
    cpu_rate = PUSHES / cpu
    print(
        "\n".join(
            [
                "",
                f"APNs pushes from one process, {PUSHES} devices, database {dialect}, "
                f"{os.cpu_count()} CPUs (shared), up to {CONNECTIONS} HTTP/2 connection(s)",
                f"  push_now -> last push received: {seconds:.2f} s = {rate:.0f} pushes/s "
                f"(goal >= {GOAL_PER_SECOND}/s: {'met' if rate >= GOAL_PER_SECOND else 'not met'})",
                f"  push_now returned (outcomes recorded) after {returned - started:.2f} s; CPU of this "
                f"process {cpu / PUSHES * 1000:.2f} ms per push (dispatch, database, TLS, HTTP/2) = "
                f"{cpu_rate:.0f} pushes per CPU-second",
                f"  the stand-in saw {received.connections} HTTP/2 connection(s) in all (warm-up included), "
                f"at most {received.peak_streams} streams in flight at once (it answers each stream as it "
                f"ends); its own CPU {stand_in_cpu / PUSHES * 1000:.2f} ms per push",
                "Reproduce:",
                f"  HIKESHI_BENCH_PUSHES={PUSHES} HIKESHI_BENCH_APNS_CONNECTIONS={CONNECTIONS} "
                f"{_database_env()}.venv/bin/pytest -p no:cacheprovider "
                "-o python_files=bench_*.py tests/bench/bench_apns_push_rate.py -m bench -s -q",
            ]
        )
    )
