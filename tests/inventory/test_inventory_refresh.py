"""Inventory refreshes: queued after enrollment, on demand and when due, never twice per kind."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from commands.inventory_refresh import (
    INVENTORY_KINDS,
    devices_due_for_refresh,
    queue_inventory_refresh,
    refresh_due_devices,
)
from mdm.ground.models import Command, CommandStatus, OrgUnit
from mdm.services.unit_policy import set_unit_policy
from tests.inventory.helpers import ADMIN, answer
from tests.support.factories import make_device


def _pending(session, device) -> dict[str, int]:
    rows = session.execute(
        select(Command.request_type, func.count())
        .where(Command.device_id == device.id, Command.status.in_(CommandStatus.PENDING))
        .group_by(Command.request_type)
    ).all()
    return dict(rows)


def test_offline_device_never_piles_up_refreshes(session, frozen_clock):
    device = make_device(session)
    first = queue_inventory_refresh(session, device, ADMIN)
    for _ in range(50):
        frozen_clock.advance(hours=4)
        again = queue_inventory_refresh(session, device, ADMIN)
        assert [c.id for c in again] == [c.id for c in first]
        refresh_due_devices(session, ADMIN)
    assert _pending(session, device) == dict.fromkeys(INVENTORY_KINDS, 1)


def test_only_named_kinds_and_only_inventory(session):
    device = make_device(session)
    queue_inventory_refresh(session, device, ADMIN, kinds=["SecurityInfo"])
    assert _pending(session, device) == {"SecurityInfo": 1}
    with pytest.raises(ValueError, match="DeviceLock"):
        queue_inventory_refresh(session, device, ADMIN, kinds=["DeviceLock"])


def test_a_fetched_and_answered_refresh_allows_the_next(session, frozen_clock):
    device = make_device(session)
    answer(session, device, "DeviceInformation", {"QueryResponses": {"OSVersion": "17.5"}})
    assert devices_due_for_refresh(session) == []
    frozen_clock.advance(hours=3, minutes=59)
    assert devices_due_for_refresh(session) == []
    frozen_clock.advance(minutes=2)
    assert devices_due_for_refresh(session) == [device]
    assert refresh_due_devices(session, ADMIN) == 1
    assert _pending(session, device) == dict.fromkeys(INVENTORY_KINDS, 1)
    # Pending now: not due again however long it stays offline.
    frozen_clock.advance(days=3)
    assert devices_due_for_refresh(session) == []


def test_per_unit_interval(session, frozen_clock):
    unit = OrgUnit(kind="unit", name_ja="救急1隊")
    session.add(unit)
    session.flush()
    set_unit_policy(session, ADMIN, unit.id, inventory_interval_hours=1)
    fast, slow = make_device(session), make_device(session)
    fast.org_unit_id = unit.id
    for device in (fast, slow):
        answer(session, device, "DeviceInformation", {"QueryResponses": {"OSVersion": "17.5"}})
    frozen_clock.advance(hours=2)
    assert devices_due_for_refresh(session) == [fast]
    # The default for units without their own interval comes from settings (scheduler job).
    assert devices_due_for_refresh(session, default_interval_hours=1) == [fast, slow]


def test_enrollment_queues_the_first_inventory(session):
    from mdm.services.devices import token_update

    device = make_device(session, state="pending")
    token_update(
        session,
        device,
        {"Token": b"\x01" * 32, "PushMagic": "MAGIC", "Topic": "com.apple.mgmt.External.x"},
        b"raw",
        "192.0.2.9",
        secret_key="k",
    )
    assert set(INVENTORY_KINDS) <= set(_pending(session, device))
