"""Services that react to fresh inventory (compliance evaluation) register here."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from mdm.models import Device

InventoryHook = Callable[[Session, Device, str], None]
_HOOKS: list[InventoryHook] = []


def after_inventory(fn: InventoryHook) -> InventoryHook:
    """Register `fn(session, device, request_type)`, run after a result has been parsed."""
    if fn not in _HOOKS:
        _HOOKS.append(fn)
    return fn


def inventory_updated(session: Session, device: Device, request_type: str) -> None:
    session.flush()
    for hook in _HOOKS:
        hook(session, device, request_type)
