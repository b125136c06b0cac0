"""Benchmark: "lock now" over the REST API until the push reaches APNs (the HTTP/2 test server).

Not part of the default test run. Run it explicitly (SQLite, then PostgreSQL):

    .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_lock_now.py -m bench -s -q
    HIKESHI_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_lock_now.py -m bench -s -q

HIKESHI_BENCH_CALLS sets the number of calls (default 200). Each call locks a fresh incident of
its own device (so every call queues a new EnableLostMode at top priority), one call at a time:
POST /api/v1/incidents/<id>/lock through the application (Flask test client, in process), then
wait for the APNs test server to receive the push. Reported, per call:

- return → push: from the API call returning to the APNs server receiving the push. Negative when
  the push (sent from the commit hook) arrives before the API has finished writing its answer.
- call → push: from the API call starting to the APNs server receiving the push.

Baseline, measured in the same run against the same devices and the same HTTP/2 connection: a
plain `dispatcher.push_now([device_id])` (call → push), i.e. the cost of the push alone. The ratio
says what the hotline adds (validation, the incident and audit rows, the commit) on top of it.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace
from typing import Any

import pytest

import commands.incidents as hotline
from mdm import create_app
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.db import transaction
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from tests.support.factories import make_device
from tests.web.helpers import bearer, make_token

pytestmark = pytest.mark.bench

CALLS = int(os.environ.get("HIKESHI_BENCH_CALLS", "200"))
WARMUP = 10
OPERATOR = Actor("bench-operator", "operator")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _ms(values: list[float]) -> tuple[float, float]:
    return _percentile(values, 0.50) * 1000, _percentile(values, 0.99) * 1000


@pytest.fixture
def bench_app(settings: Any, device_ca: Any, apns_server: Any) -> Any:
    push = apns_server.issue_client_credentials()
    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )
    app = create_app(conf)
    factory = app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        loaded = read_push_certificate(push.cert_pem + push.key_pem)
        import_push_certificate(s, loaded, secret_key=conf.secret_key, actor=SYSTEM)
    app.config["bench_topic"] = push.topic
    yield app
    app.extensions["hikeshi"].dispatcher.close()
    app.extensions["hikeshi"].engine.dispose()


def _incidents(app: Any, n: int) -> list[tuple[int, int]]:
    """n devices, each with an open incident: [(device id, incident id)]."""
    made = []
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        for _ in range(n):
            device = make_device(s, supervised=True)
            device.topic = app.config["bench_topic"]
            incident = hotline.open_incident(s, device, {"caller_name": "bench"}, actor=OPERATOR)
            made.append((device.id, incident.id))
    return made


def test_lock_now_latency(bench_app: Any, apns_server: Any, session_factory: Any) -> None:
    app = bench_app
    client = app.test_client()
    dispatcher = app.extensions["hikeshi"].dispatcher
    with session_factory() as s:
        token = bearer(make_token(s, "operator", name="bench"))
    targets = _incidents(app, WARMUP + CALLS)
    apns_server.clear_pushes()

    def lock(incident_id: int) -> tuple[float, float, float]:
        expected = len(apns_server.pushes) + 1
        started = time.monotonic()
        response = client.post(f"/api/v1/incidents/{incident_id}/lock", headers=token, json={})
        returned = time.monotonic()
        assert response.status_code == 200, response.get_data(as_text=True)
        push = apns_server.wait_for_pushes(expected, timeout=10)[-1]
        assert dispatcher.wait_idle(10)
        return started, returned, push.received_monotonic

    def plain_push(device_id: int) -> tuple[float, float]:
        expected = len(apns_server.pushes) + 1
        started = time.monotonic()
        outcomes = dispatcher.push_now([device_id], timeout=10)
        assert outcomes and outcomes[0].status == 200, outcomes
        push = apns_server.wait_for_pushes(expected, timeout=10)[-1]
        assert dispatcher.wait_idle(10)
        return started, push.received_monotonic

    for device_id, incident_id in targets[:WARMUP]:
        lock(incident_id)
        plain_push(device_id)

    return_to_push, call_to_push, api_time, baseline = [], [], [], []
    # Interleaved, so both see the same machine load over the run.
    for device_id, incident_id in targets[WARMUP:]:
        started, returned, received = lock(incident_id)
        return_to_push.append(received - returned)
        call_to_push.append(received - started)
        api_time.append(returned - started)
        b_started, b_received = plain_push(device_id)
        baseline.append(b_received - b_started)

    database = app.extensions["hikeshi"].engine.dialect.name
    rows = [
        ("lock now: API return → push received", *_ms(return_to_push)),
        ("lock now: API call → push received", *_ms(call_to_push)),
        ("lock now: API call duration", *_ms(api_time)),
        ("baseline: push_now → push received", *_ms(baseline)),
    ]
    lines = [
        f"\nLock-now latency, {CALLS} calls, database {database}",
        f"{'':42} {'p50 ms':>9} {'p99 ms':>9}",
    ]
    lines += [f"{name:42} {p50:9.2f} {p99:9.2f}" for name, p50, p99 in rows]
    call_p50, call_p99 = _ms(call_to_push)
    base_p50, base_p99 = _ms(baseline)
    lines.append(
        f"ratio call→push / baseline: p50 {call_p50 / base_p50:.2f}x, p99 {call_p99 / base_p99:.2f}x"
    )
    lines.append(
        "reproduce: "
        + ("HIKESHI_TEST_DATABASE_URL=... " if database == "postgresql" else "")
        + f"HIKESHI_BENCH_CALLS={CALLS} .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py "
        "tests/bench/bench_lock_now.py -m bench -s -q"
    )
    print("\n".join(lines))
    assert len(call_to_push) == CALLS
    # Every lock went out as a fresh top-priority command, each pushed once.
    assert statistics.median(call_to_push) > 0
