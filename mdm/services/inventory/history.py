"""The history of what changed on a device, with when."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import InventoryChange


class ChangeKind:
    OS_UPGRADED = "os_upgraded"
    OS_DOWNGRADED = "os_downgraded"
    APP_INSTALLED = "app_installed"
    APP_REMOVED = "app_removed"
    APP_UPDATED = "app_updated"
    BATTERY_LOW = "battery_low"
    SUPERVISION_CHANGED = "supervision_changed"
    PROFILE_INSTALLED = "profile_installed"
    PROFILE_REMOVED = "profile_removed"
    CERTIFICATE_ADDED = "certificate_added"
    CERTIFICATE_REMOVED = "certificate_removed"
    PASSCODE_CHANGED = "passcode_changed"
    # A lasting DeviceInformation value changed (subject: the key), e.g. a new ICCID.
    DEVICE_INFORMATION_CHANGED = "device_info_changed"


def record_change(
    session: Session,
    device_id: int,
    kind: str,
    subject: str = "",
    old: object = None,
    new: object = None,
) -> InventoryChange:
    change = InventoryChange(
        device_id=device_id,
        kind=kind,
        subject=subject[:255],
        old_value=None if old is None else str(old)[:255],
        new_value=None if new is None else str(new)[:255],
        occurred_at=clock.now(),
    )
    session.add(change)
    return change


def device_history(session: Session, device_id: int, *, limit: int = 200) -> list[InventoryChange]:
    """Newest first."""
    return list(
        session.scalars(
            select(InventoryChange)
            .where(InventoryChange.device_id == device_id)
            .order_by(InventoryChange.occurred_at.desc(), InventoryChange.id.desc())
            .limit(limit)
        )
    )
