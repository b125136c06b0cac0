"""Benchmark: the scheduler's `amapi_policies` tick over many AMAPI units.

Not part of the default test run (pytest collects test_*.py only). Run it explicitly:

    .venv/bin/pytest tests/bench/bench_amapi_policies.py -o python_files='bench_*.py' -s -q

HIKESHI_BENCH_AMAPI_UNITS (default 40) units under one station in AMAPI mode, with the EAP-TLS,
passcode, camera, USB and app profile of tests/amapi assigned to the station. Against the AMAPI
simulator (tests/support/amapi_sim.py, real HTTP, every request checked against the discovery
document): the first tick patches every unit's policy (render + Wi-Fi identity + PATCH), the
steady tick renders and hashes them and patches none. Reported: seconds per unit of each, and the
ratio steady / first (DESIGN.md: ratios, not timings).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import pytest

from mdm.ground.audit import SYSTEM
from mdm.ground.models import OrgUnit
from mdm.services.amapi.mode import set_android_mode
from mdm.services.amapi.schedule import scheduled_policy_sync
from mdm.services.orgunits import create_unit
from profiles.assignment import assign_profile
from profiles.service import create_profile
from tests.amapi.test_amapi_core import UNIT_PROFILE, _bind
from tests.support.amapi_sim import AmapiSimulator

pytestmark = pytest.mark.bench


def test_amapi_policy_tick(app: Any, session_factory: Any, settings: Any) -> None:
    count = int(os.environ.get("HIKESHI_BENCH_AMAPI_UNITS", "40"))
    with AmapiSimulator() as sim:
        settings = replace(settings, amapi_url=sim.api_url, pubsub_url=sim.pubsub_url)
        with session_factory() as session:
            hq = create_unit(session, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=SYSTEM)
            station = create_unit(
                session, {"kind": "station", "name_ja": "署", "code": "ST", "parent_id": hq.id}, actor=SYSTEM
            )
            for n in range(count):
                create_unit(
                    session,
                    {"kind": "unit", "name_ja": f"救急{n}隊", "code": f"A{n}", "parent_id": station.id},
                    actor=SYSTEM,
                )
            _bind(session, settings, sim)
            profile = create_profile(session, SYSTEM, UNIT_PROFILE)
            assign_profile(session, settings, profile, session.get(OrgUnit, station.id), actor=SYSTEM)
            set_android_mode(session, session.get(OrgUnit, station.id), "amapi", actor=SYSTEM)
            session.commit()
        started = time.perf_counter()
        first = scheduled_policy_sync(session_factory, settings)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        steady = scheduled_policy_sync(session_factory, settings)
        steady_s = time.perf_counter() - started
        units = count + 1  # the station itself is in AMAPI mode too
        assert len(first["patched"]) == units and steady["patched"] == [] and steady["unchanged"] == units
        assert sim.violations == []
    print(
        f"\namapi_policies over {units} AMAPI units: first tick {first_s / units * 1000:.1f} ms/unit "
        f"(patched {units}), steady tick {steady_s / units * 1000:.1f} ms/unit (patched 0), "
        f"steady/first = {steady_s / first_s:.2f}"
    )
