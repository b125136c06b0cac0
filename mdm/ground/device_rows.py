"""The lock order of a device's rows: every writer of a device's commands takes its device row
first (PostgreSQL: FOR NO KEY UPDATE, which leaves rows that reference the device free), the
push dispatcher recording pushes too, so no two transactions wait for each other in a cycle
(tests/protocol/test_device_lock_order.py)."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mdm.ground.db import is_postgres
from mdm.ground.models import Device

# The session.info key of the devices whose row the current transaction holds.
_HELD_DEVICES = "hikeshi.held_device_rows"
_HOLD_DEVICE = select(Device.id).where(Device.id == bindparam("device_id")).with_for_update(key_share=True)


def note_device_row_held(session: Session, device_id: int) -> None:
    """Note that this transaction holds `device_id`'s row (its caller's read locked it)."""
    transaction = session.get_transaction()
    held: tuple[object, set[int]] | None = session.info.get(_HELD_DEVICES)
    if held is None or held[0] is not transaction:
        held = session.info[_HELD_DEVICES] = (transaction, set())
    held[1].add(device_id)


def hold_device_row(session: Session, device_id: int) -> None:
    """Lock the device row (PostgreSQL) unless this transaction holds it already, before anything
    pending in the session is written: the device row comes before its commands."""
    if not is_postgres(session):
        return
    held = session.info.get(_HELD_DEVICES)
    if held is not None and held[0] is session.get_transaction() and device_id in held[1]:
        return
    with session.no_autoflush:
        session.execute(_HOLD_DEVICE, {"device_id": device_id})
    note_device_row_held(session, device_id)
