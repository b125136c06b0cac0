"""Fixtures for the web tests: an org tree with devices, and users of every role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.models import Device, EnrollmentState, OrgUnit
from mdm.services.orgunits import assign_device, create_unit


@dataclass
class Tree:
    hq: OrgUnit
    station_a: OrgUnit
    unit_a1: OrgUnit
    station_b: OrgUnit
    device_a: Device
    device_b: Device
    device_loose: Device


def _device(session: Session, udid: str, name: str, serial: str, unit: OrgUnit | None) -> Device:
    device = Device(
        udid=udid,
        platform="apple",
        serial_number=serial,
        device_name=name,
        product_name="iPad13,18",
        model_name="iPad",
        os_version="17.5.1",
        enrollment_state=EnrollmentState.ENROLLED,
        enrolled_at=clock.now(),
        last_seen_at=clock.now(),
        is_supervised=True,
        push_token="ab" * 32,
        push_magic="MAGIC",
        topic="com.apple.mgmt.External.test",
    )
    session.add(device)
    session.flush()
    if unit is not None:
        assign_device(session, device, unit, actor=SYSTEM)
    return device


@pytest.fixture
def tree(app: Any, session_factory: Any) -> Tree:
    """HQ → station A → unit A1, HQ → station B; a device in A1, one in B, one in no unit."""
    with session_factory() as session:
        hq = create_unit(session, {"kind": "hq", "name_ja": "火消し消防本部", "code": "HQ"}, actor=SYSTEM)
        station_a = create_unit(
            session,
            {"kind": "station", "name_ja": "中央消防署", "code": "ST-A", "parent_id": hq.id},
            actor=SYSTEM,
        )
        unit_a1 = create_unit(
            session,
            {
                "kind": "unit",
                "unit_type": "ambulance",
                "name_ja": "中央救急隊",
                "code": "A1",
                "parent_id": station_a.id,
            },
            actor=SYSTEM,
        )
        station_b = create_unit(
            session,
            {"kind": "station", "name_ja": "北消防署", "code": "ST-B", "parent_id": hq.id},
            actor=SYSTEM,
        )
        device_a = _device(session, "00008101-AAAA000000000001", "救急1 iPad", "SERIALA0001", unit_a1)
        device_b = _device(session, "00008101-BBBB000000000002", "北1 iPad", "SERIALB0002", station_b)
        device_loose = _device(session, "00008101-CCCC000000000003", "unassigned iPad", "SERIALC0003", None)
        session.commit()
        return Tree(hq, station_a, unit_a1, station_b, device_a, device_b, device_loose)
