"""mdm.ground.db.update_rows: many rows' columns written by primary key, in one statement on
PostgreSQL, the same result on SQLite; only the model's own columns can be named."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.db import update_rows
from mdm.ground.models import DeviceCompliance
from tests.support.factories import make_device


def test_each_row_gets_its_own_values_and_other_rows_are_left(session: Session) -> None:
    now = clock.now()
    devices = [make_device(session) for _ in range(3)]
    session.flush()
    for device in devices:
        session.add(DeviceCompliance(device_id=device.id, state="ok", open_findings=0, evaluated_at=now))
    session.commit()
    later = now + timedelta(minutes=5)
    update_rows(
        session,
        DeviceCompliance,
        [
            {"device_id": devices[0].id, "state": "critical", "open_findings": 2, "evaluated_at": later},
            {"device_id": devices[2].id, "state": "warning", "open_findings": 1, "evaluated_at": later},
        ],
    )
    session.commit()
    session.expire_all()
    rows = {
        row.device_id: (row.state, row.open_findings, row.evaluated_at)
        for row in session.scalars(select(DeviceCompliance))
    }
    assert rows == {
        devices[0].id: ("critical", 2, later),
        devices[1].id: ("ok", 0, now),
        devices[2].id: ("warning", 1, later),
    }


def test_a_name_that_is_not_a_column_is_refused_before_any_sql(session: Session) -> None:
    device = make_device(session)
    session.flush()
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite goes through the ORM's bulk update, which refuses it in its own way")
    with pytest.raises(KeyError):
        update_rows(session, DeviceCompliance, [{"device_id": device.id, "state; DROP TABLE x": "ok"}])
