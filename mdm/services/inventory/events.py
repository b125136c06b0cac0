"""Services that react to fresh inventory (compliance evaluation) are connected here.

A parser reports each device it updated with `inventory_updated`. Just before the transaction
commits, the devices updated in it are written to the outbox (`settle_before_commit`, one row a
device, in the statement that writes every row the commit asks for), and the hooks connected to
INVENTORY_UPDATED (by the wiring, mdm.roots.wiring) run right after it, in the drain's transaction
that deletes those rows (`settle_claimed`, mdm.ground.outbox_drain): exactly once, off the
device's request. A device answering DeviceInformation, SecurityInfo and InstalledApplicationList
in one transaction is evaluated once, not three times, and a drain evaluates every device of its
batch with one query per table, not per device. Code that must read what the hooks write before
committing calls `settle_inventory` first (the commit then asks for nothing more).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, SessionTransaction

from mdm.ground.hooks import HookPoint
from mdm.ground.models import Device, OutboxTopic
from mdm.ground.push import outbox
from mdm.services.inventory.facts import forget_facts_in_use

InventoryHook = Callable[[Session, list[Device]], None]
INVENTORY_UPDATED: HookPoint[InventoryHook] = HookPoint("inventory updated")
_PENDING = "hikeshi.inventory_updated"  # session.info key: {device id: Device}

# A DeviceInformation answer said, for the first time, that the device is supervised (it was not
# known to be): what only supervised devices get (Activation Lock escrow) follows, in the same
# transaction. Connected by the wiring.
SupervisedHook = Callable[[Session, Device], None]
SUPERVISION_REPORTED: HookPoint[SupervisedHook] = HookPoint("supervision reported")


def supervision_reported(session: Session, device: Device) -> None:
    for hook in SUPERVISION_REPORTED.hooks(session):
        hook(session, device)


def inventory_updated(session: Session, device: Device, request_type: str) -> None:
    """Note that a `request_type` result changed what is known of `device` in this transaction."""
    session.info.setdefault(_PENDING, {})[device.id] = device


def settle_inventory(session: Session) -> int:
    """Run the hooks now for the devices updated so far; returns how many. Runs before every commit."""
    pending: dict[int, Device] | None = session.info.pop(_PENDING, None)
    if not pending:
        return 0
    session.flush()
    devices = [pending[key] for key in sorted(pending)]
    for hook in INVENTORY_UPDATED.hooks(session):
        hook(session, devices)
    return len(devices)


def settle_before_commit(session: Session) -> None:
    """The before_commit listener: the devices updated in this transaction, asked of the outbox."""
    if session.in_nested_transaction():
        return  # a savepoint released: the real commit asks
    pending: dict[int, Device] | None = session.info.pop(_PENDING, None)
    if pending:
        outbox.ask(session, OutboxTopic.SETTLE_INVENTORY, pending)


def settle_claimed(session: Session, subjects: dict[str, list[int]]) -> None:
    """The drain's handler of SETTLE_INVENTORY rows: the hooks, for the devices still there, in
    the drain's transaction (the readiness of what they change is asked at its commit)."""
    ids = subjects.get(OutboxTopic.SETTLE_INVENTORY, [])
    if not ids:
        return
    devices = list(session.scalars(select(Device).where(Device.id.in_(ids)).order_by(Device.id)))
    for hook in INVENTORY_UPDATED.hooks(session):
        hook(session, devices)


def forget_at_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """The after_transaction_end listener."""
    # Committed (settled already), rolled back (never happened) or closed: nothing left to run.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        forget_facts_in_use(session)
