"""Benchmark: an Apps and Books location with many apps, and a burst of license requests.

Not part of the default test run (pytest collects test_*.py only). Run it explicitly:

    .venv/bin/pytest tests/bench/bench_vpp_sync.py -o python_files='bench_*.py' -s -q

HIKESHI_BENCH_VPP_ASSETS (default 2000) apps are served by the simulator (tests/support/
vpp_service.py, a real HTTP server) in pages of 100; the first full sync inserts them and a second
one updates them (the steady state). Then HIKESHI_BENCH_VPP_DEVICES (default 300) serials each ask
for a license of one app (each request: an assignments check and an associate, in the caller's
transaction), and the scheduled poll finishes their events. Reported: seconds per sync and
requests, and the ratio of a steady sync to the first (DESIGN.md: ratios, not timings).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from mdm.ground.audit import Actor
from mdm.ground.models import VppAssignment
from mdm.services.vpp.provider import VppLicenseProvider
from mdm.services.vpp.schedule import run_event_poll, run_sync
from mdm.services.vpp.token import store_token
from tests.support.vpp_service import RunningVppService, VolumePurchaseService, token_file

pytestmark = pytest.mark.bench


def test_vpp_sync_and_license_burst(settings: Any, session_factory: Any) -> None:
    assets = int(os.environ.get("HIKESHI_BENCH_VPP_ASSETS", "2000"))
    devices = int(os.environ.get("HIKESHI_BENCH_VPP_DEVICES", "300"))
    text = token_file()
    service = VolumePurchaseService(text, page_size=100, event_delay=0)
    for n in range(assets):
        service.add_asset(f"{1000000000 + n}", 50 if n else devices + 10)
    running = RunningVppService(service)
    try:
        s = replace(settings, vpp_url=running.url)
        with session_factory() as session:
            store_token(session, s, text.encode(), actor=Actor("bench", "admin", None))
            session.commit()
        started = time.perf_counter()
        first = run_sync(session_factory, s)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        run_sync(session_factory, s)
        steady_s = time.perf_counter() - started

        provider = VppLicenseProvider(s, sleep=lambda _s: None)
        started = time.perf_counter()
        with session_factory() as session:
            for n in range(devices):
                outcome = provider.ensure_device_license(
                    session, adam_id="1000000000", serial_number=f"DMP{n:06d}"
                )
                assert outcome.state == "pending", outcome
            session.commit()
        burst_s = time.perf_counter() - started
        started = time.perf_counter()
        polled = {"events_completed": 0}
        while polled["events_completed"] < devices:
            step = run_event_poll(session_factory, s)
            polled["events_completed"] += step["events_completed"]
        poll_s = time.perf_counter() - started
        with session_factory() as session:
            assigned = session.scalar(
                select(func.count()).select_from(VppAssignment).where(VppAssignment.state == "assigned")
            )
    finally:
        running.stop()
    assert first["assets"] == assets and assigned == devices
    print(
        f"\nvpp bench ({settings.database_url.split(':')[0]}): {assets} apps in {first['pages']} pages: "
        f"first sync {first_s:.2f} s, steady sync {steady_s:.2f} s (ratio {steady_s / first_s:.2f}); "
        f"{devices} license requests {burst_s:.2f} s ({1000 * burst_s / devices:.1f} ms each), "
        f"their events polled to assigned in {poll_s:.2f} s"
    )
