"""Benchmark: assigning a profile to a station of 1,000 iPads queues and pushes in seconds.

Not collected by the default test run. Run it with

    .venv/bin/pytest tests/bench/bench_profile_assignment.py -p no:cacheprovider \
        -o python_files=bench_*.py -q -s

(add HIKESHI_TEST_DATABASE_URL=... for PostgreSQL; HIKESHI_BENCH_DEVICES changes the count).
The baseline, measured in the same run on the same devices, queues one plain SecurityInfo per
device one by one with enqueue_command, as a caller without a bulk path would. Both are pushed
through the real dispatcher to the APNs stand-in over HTTP/2; the figures are printed.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import replace

from commands.queue import enqueue_command
from mdm import create_app
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import Device, EnrollmentState, Profile
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from mdm.services import orgunits
from profiles.assignment import assign_profile
from profiles.service import create_profile_from_template

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
DEVICES = int(os.environ.get("HIKESHI_BENCH_DEVICES", "1000"))
PUSH_TIMEOUT = 120.0


def _station_with_devices(factory, topic: str) -> list[int]:
    with transaction(factory) as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
        station = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "中央署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
        )
        now = clock.now()
        devices = [
            Device(
                udid=str(uuid.uuid4()).upper(),
                serial_number=f"DMQ{n:09d}",
                platform="apple",
                is_supervised=True,
                enrollment_state=EnrollmentState.ENROLLED,
                push_token=uuid.uuid4().hex * 2,
                push_magic=str(uuid.uuid4()).upper(),
                topic=topic,
                org_unit_id=station.id,
                created_at=now,
                enrolled_at=now,
            )
            for n in range(DEVICES)
        ]
        s.add_all(devices)
        s.flush()
        return [d.id for d in devices]


def test_assign_profile_to_a_station(settings, device_ca, apns_server):
    credentials = apns_server.issue_client_credentials()
    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )
    app = create_app(conf)
    hikeshi = app.extensions["hikeshi"]
    factory = hikeshi.session_factory
    try:
        with transaction(factory) as s:
            loaded = read_push_certificate(credentials.cert_pem + credentials.key_pem)
            import_push_certificate(s, loaded, secret_key=conf.secret_key, actor=ADMIN)
            profile_id = create_profile_from_template(
                s, ADMIN, "field-standard", identifier="jp.example.fd.bench"
            ).id
        device_ids = _station_with_devices(factory, credentials.topic)

        # Baseline: one plain command per device, queued one by one.
        started = time.perf_counter()
        with transaction(factory) as s:
            for device_id in device_ids:
                enqueue_command(s, s.get(Device, device_id), "SecurityInfo", {}, actor=ADMIN)
        baseline_queue = time.perf_counter() - started
        apns_server.wait_for_pushes(DEVICES, timeout=PUSH_TIMEOUT)
        baseline_total = time.perf_counter() - started
        assert hikeshi.dispatcher.wait_idle(PUSH_TIMEOUT)
        apns_server.clear_pushes()

        # The assignment: render and sign once, queue InstallProfile for every device in bulk.
        started = time.perf_counter()
        with transaction(factory) as s:
            station = orgunits.find_unit_by_code(s, "CEN")
            summary = assign_profile(s, conf, s.get(Profile, profile_id), station, actor=ADMIN)
        assign_queue = time.perf_counter() - started
        pushes = apns_server.wait_for_pushes(DEVICES, timeout=PUSH_TIMEOUT)
        assign_total = time.perf_counter() - started
        assert hikeshi.dispatcher.wait_idle(PUSH_TIMEOUT)
        assert len(summary.installs) == DEVICES
        assert len({p.token for p in pushes}) == DEVICES
    finally:
        hikeshi.dispatcher.close()
        hikeshi.engine.dispose()

    backend = make_backend_label(conf.database_url)
    print()
    print(f"profile assignment benchmark ({backend}, {DEVICES} devices)")
    print(
        f"  baseline: {DEVICES} SecurityInfo queued one by one: {baseline_queue:.2f} s to commit, "
        f"{baseline_total:.2f} s until every push reached APNs"
    )
    print(
        f"  assign profile to station:                 {assign_queue:.2f} s to commit, "
        f"{assign_total:.2f} s until every push reached APNs"
    )
    print(
        f"  ratio assignment / baseline: queue {assign_queue / baseline_queue:.2f}, "
        f"queue+push {assign_total / baseline_total:.2f}"
    )
    # "Seconds, not minutes" (issue 5).
    assert assign_total < 60


def make_backend_label(url: str) -> str:
    return url.split(":", 1)[0]
