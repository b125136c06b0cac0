"""What the console says about a device's Activation Lock: only what the device answered.

on / off: the device's last IsActivationLockEnabled answer (DeviceInformation; Apple deprecated
the key in iOS 16, so newer tablets may never say, and then it stays unknown). A device that never
answered is unknown, never "off". Escrowed: a bypass code is held (sealed), or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from mdm.ground.models import Device, DeviceActivationLock, DeviceFacts
from mdm.services.activation_lock.answers import allowed_in_mdm_options
from mdm.services.activation_lock.unit_setting import UnitActivationLock, unit_activation_lock


class LockState(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ActivationLockStatus:
    state: LockState
    reported_at: str | None  # ISO 8601 of the IsActivationLockEnabled answer, when known
    escrowed: bool
    escrowed_at: datetime | None
    unavailable_at: datetime | None  # the device last answered without a code
    unit: UnitActivationLock
    # ActivationLockAllowedWhileSupervised as the device reported it (MDMOptions) or, failing
    # that, acknowledged it; None: unknown.
    device_allows: bool | None
    supervised: bool | None


def since_enrollment(at: datetime | None, device: Device) -> bool:
    """Whether `at` is after the device last enrolled (a wiped tablet forgot what it had before)."""
    return at is not None and (device.enrolled_at is None or at >= device.enrolled_at)


def device_allows(session: Session, device: Device) -> bool | None:
    """ActivationLockAllowedWhileSupervised as the device has it now, as far as it said since it
    last enrolled: the later of its MDMOptions answer and the value it acknowledged; None: unknown."""
    said: list[tuple[datetime, bool]] = []
    facts = session.get(DeviceFacts, device.id)
    if facts is not None:
        reported = allowed_in_mdm_options(facts.raw_device_information or {})
        reported_at = (facts.device_information_reported_at or {}).get("MDMOptions")
        if reported is not None and isinstance(reported_at, str):
            said.append((datetime.fromisoformat(reported_at), reported))
    row = session.get(DeviceActivationLock, device.id)
    if row is not None and row.allowed_acknowledged is not None and row.allowed_acknowledged_at is not None:
        said.append((row.allowed_acknowledged_at, row.allowed_acknowledged))
    current = [(at, value) for at, value in said if since_enrollment(at, device)]
    return max(current, key=lambda pair: pair[0])[1] if current else None


def activation_lock_status(session: Session, device: Device) -> ActivationLockStatus:
    facts = session.get(DeviceFacts, device.id)
    row = session.get(DeviceActivationLock, device.id)
    enabled = facts.is_activation_lock_enabled if facts is not None else None
    state = LockState.UNKNOWN if enabled is None else (LockState.ON if enabled else LockState.OFF)
    reported_at = None
    if facts is not None:
        reported_at = (facts.device_information_reported_at or {}).get("IsActivationLockEnabled")
    return ActivationLockStatus(
        state=state,
        reported_at=reported_at if enabled is not None else None,
        escrowed=row is not None and row.bypass_code_sealed is not None,
        escrowed_at=row.bypass_code_escrowed_at if row is not None else None,
        unavailable_at=row.bypass_code_unavailable_at if row is not None else None,
        unit=unit_activation_lock(session, device.org_unit_id),
        device_allows=device_allows(session, device),
        supervised=device.is_supervised,
    )
