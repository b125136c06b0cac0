"""The OS update target as the compliance rule os_update_overdue reads it (connected to
mdm.services.compliance.sources.OS_UPDATE_TARGET_SOURCES by the wiring)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import Device, DeviceOsUpdate, OsRelease
from mdm.services.compliance.sources import OsUpdateTarget, batch_of
from mdm.services.osupdates.policy import UpdatePolicyBook
from mdm.services.osupdates.targets import apple_platform, releases, target_for


@dataclass(frozen=True)
class _Reads:
    book: UpdatePolicyBook
    releases: dict[str, OsRelease]
    # The batch's update rows (a device without one has none here); None: read each device's.
    updates: dict[int, DeviceOsUpdate] | None


def _reads(session: Session) -> _Reads:
    """The policies and releases, with the batch's update rows: read once for a batch of devices
    evaluated together (a fleet check's page), else for this device."""
    batch = batch_of(session)
    if batch is None:
        return _Reads(UpdatePolicyBook(session), releases(session), None)
    found = batch.reads.get(__name__)
    if not isinstance(found, _Reads):
        rows = session.scalars(select(DeviceOsUpdate).where(DeviceOsUpdate.device_id.in_(batch.device_ids)))
        found = batch.reads[__name__] = _Reads(
            UpdatePolicyBook(session), releases(session), {row.device_id: row for row in rows}
        )
    return found


def os_update_target(session: Session, device: Device) -> OsUpdateTarget | None:
    # Android tablets are kept current by their systemUpdate policy and judged by their security
    # patch level (android_security_patch_outdated), not by an Apple version number.
    if not apple_platform(device):
        return None
    reads = _reads(session)
    policy = reads.book.for_unit(device.org_unit_id)
    if not policy.enforced:
        return None
    updates = (
        reads.updates.get(device.id) if reads.updates is not None else session.get(DeviceOsUpdate, device.id)
    )
    target = target_for(policy, updates, reads.releases)
    if target.version is None:
        return None
    return OsUpdateTarget(target.version, target.due_at)
