"""What one AMAPI STATUS_REPORT costs the database, against the agent's inventory of the same
tablet (the baseline: both end in mdm.services.inventory.android): SQL statements per report and
the time ratio, on whichever database the run uses. No network: the Pub/Sub messages are built
here; only their application (dedup row, Device → inventory, AMAPI row, compliance asked) is
measured.

    .venv/bin/pytest tests/bench/bench_amapi_status_reports.py -q -p no:cacheprovider -s
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from sqlalchemy import event, select

from commands.context import CommandContext
from mdm.ground.audit import SYSTEM
from mdm.ground.models import AmapiDevice, AmapiEnrollmentToken, Device
from mdm.services.amapi.inventory_map import agent_inventory
from mdm.services.amapi.notifications import apply_message
from mdm.services.inventory.android import apply_android_inventory
from mdm.services.orgunits import create_unit

pytestmark = pytest.mark.bench
REPORTS = 200
NAME = "enterprises/LCbench/devices/d1"


def _device(n: int) -> dict:
    return {
        "name": NAME,
        "enrollmentTokenName": "enterprises/LCbench/enrollmentTokens/t1",
        "managementMode": "DEVICE_OWNER",
        "lastStatusReportTime": f"2026-12-06T10:{n // 60:02d}:{n % 60:02d}Z",
        "hardwareInfo": {"serialNumber": "R52BENCH", "model": "SM-T636B", "brand": "samsung"},
        "softwareInfo": {"androidVersion": "14", "securityPatchLevel": "2026-10-01"},
        "deviceSettings": {"isDeviceSecure": n % 2 == 0, "isEncrypted": True},
        "applicationReports": [
            {
                "packageName": f"jp.example.app{i}",
                "versionName": "1.0",
                "versionCode": 1,
                "state": "INSTALLED",
            }
            for i in range(20)
        ],
        "policyCompliant": True,
    }


def _message(n: int, kind: str = "STATUS_REPORT") -> dict:
    return {
        "messageId": f"bench-{kind}-{n}",
        "attributes": {"notificationType": kind},
        "data": base64.b64encode(json.dumps(_device(n)).encode()).decode(),
    }


def test_status_report_cost_against_the_agent_inventory(session_factory, engine) -> None:
    context = CommandContext()
    with session_factory() as s:
        unit = create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=SYSTEM)
        s.add(
            AmapiEnrollmentToken(
                org_unit_id=unit.id,
                token_name="enterprises/LCbench/enrollmentTokens/t1",
                policy_name="enterprises/LCbench/policies/p",
                value_sealed=b"-",
                qr_code_sealed=b"-",
                created_by="bench",
            )
        )
        s.commit()
        apply_message(s, _message(0, "ENROLLMENT"), context)
        s.commit()
        device_id = s.scalars(select(AmapiDevice.device_id)).one()

    statements = 0

    def count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        statements = 0
        started = time.perf_counter()
        for n in range(1, REPORTS + 1):
            with session_factory() as s:
                apply_message(s, _message(n), context)
                s.commit()
        amapi_seconds = time.perf_counter() - started
        amapi_statements = statements

        statements = 0
        started = time.perf_counter()
        for n in range(1, REPORTS + 1):
            with session_factory() as s:
                apply_android_inventory(s, s.get(Device, device_id), agent_inventory(_device(n)))
                s.commit()
        agent_seconds = time.perf_counter() - started
        agent_statements = statements
    finally:
        event.remove(engine, "before_cursor_execute", count)
    print(
        f"\nAMAPI STATUS_REPORT ({engine.dialect.name}, {REPORTS} reports of a tablet with 20 apps): "
        f"{amapi_statements / REPORTS:.1f} statements/report vs the agent inventory's "
        f"{agent_statements / REPORTS:.1f}; time ratio {amapi_seconds / agent_seconds:.2f}x "
        f"({1000 * amapi_seconds / REPORTS:.1f} ms vs {1000 * agent_seconds / REPORTS:.1f} ms a report)"
    )
    assert amapi_statements > agent_statements  # the dedup row and the AMAPI row are on top
