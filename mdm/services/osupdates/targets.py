"""A device's OS update target: the version its unit's policy asks for, when it is due, and the
local date-time a forced install is scheduled (DDM's TargetLocalDateTime, ScheduleOSUpdate's
timing): on the due day at the policy's install time, moved out of any blocked window.

"latest" is the newest version offered to this device (its AvailableOSUpdates answer) or, before
it answered, to any Apple device of the fleet. "Within N days of release" counts from when Hikeshi
first saw the release offered: Apple's answers carry no release date, and that is what the fleet
could know.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import Device, DeviceOsUpdate, OsRelease
from mdm.services.osupdates.policy import LATEST, UpdatePolicy, Window, minutes_of
from mdm.services.osupdates.versions import newest, version_tuple

# Tablets are provisioned in Japan time (HIKESHI_ANDROID_TIME_ZONE's default; iPads take the
# carrier's): the policy's clock times and windows are read in it.
FLEET_ZONE = ZoneInfo("Asia/Tokyo")
# A forced install is moved this long before a blocked window, so it is over when the window opens.
INSTALL_MARGIN = timedelta(minutes=30)


@dataclass(frozen=True)
class DeviceTarget:
    version: str | None
    build: str | None
    due_at: datetime | None
    install_at: datetime | None  # aware, in FLEET_ZONE
    why: str  # "no_policy", "latest_unknown", "version", "latest"

    @property
    def local_date_time(self) -> str | None:
        return self.install_at.strftime("%Y-%m-%dT%H:%M:%S") if self.install_at else None


def releases(session: Session, platform: str = "apple") -> dict[str, OsRelease]:
    return {r.version: r for r in session.scalars(select(OsRelease).where(OsRelease.platform == platform))}


def _offered(updates: DeviceOsUpdate | None) -> list[tuple[str, str | None]]:
    if updates is None or not updates.available:
        return []
    return [
        (str(item["Version"]), item.get("Build"))
        for item in updates.available
        if isinstance(item, dict)
        and isinstance(item.get("Version"), str)
        and not item.get("IsConfigDataUpdate")
    ]


def _in_window(moment: datetime, windows: tuple[Window, ...]) -> Window | None:
    minute = moment.hour * 60 + moment.minute
    return next((w for w in windows if w.covers(minute)), None)


def install_moment(due_at: datetime, policy: UpdatePolicy) -> datetime:
    """The local moment to force the install: the due day at the install time (the day before when
    that is already past the due moment), moved before any blocked window it falls in."""
    due_local = due_at.astimezone(FLEET_ZONE)
    minutes = minutes_of(policy.install_time)
    moment = due_local.replace(hour=minutes // 60, minute=minutes % 60, second=0, microsecond=0)
    if moment > due_local:
        moment -= timedelta(days=1)
    for _ in range(len(policy.blocked_windows) + 1):
        window = _in_window(moment, policy.blocked_windows)
        if window is None:
            break
        start = moment.replace(hour=window.start_minutes // 60, minute=window.start_minutes % 60)
        if start > moment:  # a window spanning midnight, entered after midnight
            start -= timedelta(days=1)
        moment = start - INSTALL_MARGIN
    return moment


def target_for(
    policy: UpdatePolicy, updates: DeviceOsUpdate | None, fleet_releases: dict[str, OsRelease]
) -> DeviceTarget:
    if policy.target is None:
        return DeviceTarget(None, None, None, None, "no_policy")
    if policy.target == LATEST:
        offered = _offered(updates)
        version = newest([v for v, _ in offered]) or newest(list(fleet_releases))
        if version is None:
            return DeviceTarget(None, None, None, None, "latest_unknown")
        build = dict(offered).get(version) or (
            fleet_releases[version].build if version in fleet_releases else None
        )
        why = "latest"
    else:
        version = policy.target
        known = fleet_releases.get(version)
        build = known.build if known else None
        why = "version"
    due: list[datetime] = []
    if policy.deadline is not None:
        due.append(policy.deadline)
    release = fleet_releases.get(version)
    if policy.days_after_release is not None and release is not None:
        due.append(release.first_seen_at + timedelta(days=policy.days_after_release))
    due_at = min(due) if due else None
    install_at = install_moment(due_at, policy) if due_at else None
    return DeviceTarget(version, build, due_at, install_at, why)


def apple_platform(device: Device) -> bool:
    return (device.platform or "apple") == "apple"


def supports_declarative_updates(device: Device) -> bool:
    """iOS/iPadOS 17 brought softwareupdate.enforcement.specific; older ones take the commands."""
    version = version_tuple(device.os_version)
    return apple_platform(device) and version is not None and version >= (17, 0, 0)
