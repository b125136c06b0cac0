"""Services that react to fresh inventory (compliance evaluation) register here.

A parser reports each device it updated with `inventory_updated`; the hooks run once per
transaction, just before it commits, for all the devices updated in it. A device answering
DeviceInformation, SecurityInfo and InstalledApplicationList in one transaction is evaluated once,
not three times, and a batch of results is evaluated with one query per table, not per device.
Code that reads what the hooks write before committing calls `settle_inventory` first.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from mdm.ground.models import Device
from mdm.services.inventory.facts import forget_facts_in_use

InventoryHook = Callable[[Session, list[Device]], None]
_HOOKS: list[InventoryHook] = []
_PENDING = "hikeshi.inventory_updated"  # session.info key: {device id: Device}


def after_inventory(fn: InventoryHook) -> InventoryHook:
    """Register `fn(session, devices)`, run before commit for the devices whose inventory changed."""
    if fn not in _HOOKS:
        _HOOKS.append(fn)
    return fn


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
    for hook in _HOOKS:
        hook(session, devices)
    return len(devices)


# insert=True: first of all before_commit listeners, so that what reacts to committed changes
# (readiness recompute in mdm.services.continuity, for one) sees the compliance this step writes.
@event.listens_for(Session, "before_commit", insert=True)
def _settle_before_commit(session: Session) -> None:
    settle_inventory(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_at_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # Committed (settled already), rolled back (never happened) or closed: nothing left to run.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        forget_facts_in_use(session)
