"""Who is behind and why: each Apple tablet's OS version, its target, when it is due, what the
device last said about the update, and one reason code the console explains in Japanese.

Reasons, in the order they are decided:
- no_target: the unit enforces no version (or "latest" while no device was offered one yet);
- os_unknown: the tablet never reported its OS version: unknown, never "up to date";
- up_to_date: at or past the target;
- not_supervised: before iOS 17 the update commands need supervision, so nothing can be sent;
- failed: the tablet reported the update failed (softwareupdate.failure-reason / install-state);
- overdue: past the due moment and still older;
- scheduled: older, due later (the install is scheduled for `install_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Device, DeviceFacts, DeviceOsUpdate, EnrollmentState, OsRelease
from mdm.services.osupdates.policy import UpdatePolicyBook
from mdm.services.osupdates.targets import (
    apple_platform,
    releases,
    supports_declarative_updates,
    target_for,
)
from mdm.services.osupdates.versions import is_older

REASONS = ("no_target", "os_unknown", "up_to_date", "not_supervised", "failed", "overdue", "scheduled")
BEHIND = frozenset({"os_unknown", "not_supervised", "failed", "overdue", "scheduled"})


@dataclass(frozen=True)
class DeviceUpdateState:
    device_id: int
    name: str | None
    org_unit_id: int | None
    os_version: str | None
    channel: str  # "declarative" (iOS 17+) or "commands"
    target: str | None
    target_build: str | None
    due_at: datetime | None
    install_at: str | None  # local date-time sent to the device
    reason: str
    install_state: str | None
    pending_version: str | None
    failure: Any
    status_at: datetime | None
    available: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "name": self.name,
            "org_unit_id": self.org_unit_id,
            "os_version": self.os_version,
            "channel": self.channel,
            "target": self.target,
            "target_build": self.target_build,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "install_at": self.install_at,
            "reason": self.reason,
            "behind": self.reason in BEHIND,
            "install_state": self.install_state,
            "pending_version": self.pending_version,
            "failure": self.failure,
            "status_at": self.status_at.isoformat() if self.status_at else None,
            "available": self.available,
        }


def _pending(items: dict[str, Any]) -> str | None:
    pending = items.get("softwareupdate.pending-version")
    if isinstance(pending, dict) and isinstance(pending.get("os-version"), str):
        return pending["os-version"] or None
    return None


def _failed(items: dict[str, Any], updates: DeviceOsUpdate | None) -> bool:
    if items.get("softwareupdate.install-state") == "failed":
        return True
    statuses = [i.get("Status") for i in (updates.update_status or [])] if updates else []
    return any(isinstance(s, str) and s.endswith("Failed") for s in statuses)


def state_of(
    device: Device,
    updates: DeviceOsUpdate | None,
    supervised: bool | None,
    book: UpdatePolicyBook,
    fleet_releases: dict[str, OsRelease],
    now: datetime,
) -> DeviceUpdateState:
    target = target_for(book.for_unit(device.org_unit_id), updates, fleet_releases)
    items: dict[str, Any] = dict(updates.status_items or {}) if updates else {}
    declarative = supports_declarative_updates(device)
    older = is_older(device.os_version, target.version) if target.version else None
    if target.version is None:
        reason = "no_target"
    elif older is None:
        reason = "os_unknown"
    elif not older:
        reason = "up_to_date"
    elif not declarative and supervised is not True:
        reason = "not_supervised"
    elif _failed(items, updates):
        reason = "failed"
    elif target.due_at is not None and now >= target.due_at:
        reason = "overdue"
    else:
        reason = "scheduled"
    return DeviceUpdateState(
        device_id=device.id,
        name=device.device_name,
        org_unit_id=device.org_unit_id,
        os_version=device.os_version,
        channel="declarative" if declarative else "commands",
        target=target.version,
        target_build=target.build,
        due_at=target.due_at,
        install_at=target.local_date_time,
        reason=reason,
        install_state=items.get("softwareupdate.install-state")
        if isinstance(items.get("softwareupdate.install-state"), str)
        else None,
        pending_version=_pending(items),
        failure=items.get("softwareupdate.failure-reason"),
        status_at=updates.status_at if updates else None,
        available=list(updates.available or []) if updates else [],
    )


def device_state(session: Session, device: Device) -> DeviceUpdateState | None:
    if not apple_platform(device):
        return None
    facts = session.get(DeviceFacts, device.id)
    return state_of(
        device,
        session.get(DeviceOsUpdate, device.id),
        facts.is_supervised if facts else None,
        UpdatePolicyBook(session),
        releases(session),
        clock.now(),
    )


def fleet_states(
    session: Session, *, org_unit_ids: set[int] | None = None, behind_only: bool = False, limit: int = 1000
) -> list[DeviceUpdateState]:
    """Every enrolled Apple tablet (of the given units), most urgent first."""
    query = (
        select(Device, DeviceOsUpdate, DeviceFacts.is_supervised)
        .outerjoin(DeviceOsUpdate, DeviceOsUpdate.device_id == Device.id)
        .outerjoin(DeviceFacts, DeviceFacts.device_id == Device.id)
        .where(Device.enrollment_state == EnrollmentState.ENROLLED, Device.platform == "apple")
        .order_by(Device.id)
    )
    if org_unit_ids is not None:
        query = query.where(Device.org_unit_id.in_(org_unit_ids))
    book, fleet_releases, now = UpdatePolicyBook(session), releases(session), clock.now()
    found = [state_of(d, u, s, book, fleet_releases, now) for d, u, s in session.execute(query)]
    if behind_only:
        found = [s for s in found if s.reason in BEHIND]
    urgent = ("overdue", "failed", "not_supervised", "os_unknown")
    order = {reason: index for index, reason in enumerate(urgent)}
    found.sort(key=lambda s: (order.get(s.reason, 9), s.due_at or now, s.device_id))
    return found[:limit]
