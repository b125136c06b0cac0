"""The OS update target as the compliance rule os_update_overdue reads it (connected to
mdm.services.compliance.sources.OS_UPDATE_TARGET_SOURCES by the wiring)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.ground.models import Device, DeviceOsUpdate
from mdm.services.compliance.sources import OsUpdateTarget
from mdm.services.osupdates.policy import UpdatePolicyBook
from mdm.services.osupdates.targets import apple_platform, releases, target_for


def os_update_target(session: Session, device: Device) -> OsUpdateTarget | None:
    # Android tablets are kept current by their systemUpdate policy and judged by their security
    # patch level (android_security_patch_outdated), not by an Apple version number.
    if not apple_platform(device):
        return None
    policy = UpdatePolicyBook(session).for_unit(device.org_unit_id)
    if not policy.enforced:
        return None
    target = target_for(policy, session.get(DeviceOsUpdate, device.id), releases(session))
    if target.version is None:
        return None
    return OsUpdateTarget(target.version, target.due_at)
