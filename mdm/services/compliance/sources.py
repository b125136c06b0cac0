"""What a device should have, as other services declare it: its app rules and its profiles.

Profile assignment lives in `profiles/`; the wiring (mdm.roots.wiring) connects its sources
(mdm.services.compliance.profile_sources) to APP_POLICY_SOURCES and EXPECTED_PROFILE_SOURCES.
With no source connected, or none that knows the device,
`allowed_apps_for` / `expected_profiles_for` return None and the matching rules find nothing:
a device without an app policy has no unauthorized app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.hooks import HookPoint
from mdm.ground.models import Device

# iOS lists some of Apple's own removable apps; an allow list of a fleet's apps would flag them all.
SYSTEM_APP_PREFIX = "com.apple."


@dataclass(frozen=True)
class AppPolicy:
    """`allowed` None: any app not blocked is fine. Otherwise only the allowed ones are."""

    allowed: frozenset[str] | None = None
    blocked: frozenset[str] = frozenset()

    def permits(self, identifier: str) -> bool:
        if identifier in self.blocked:
            return False
        if self.allowed is None or identifier.startswith(SYSTEM_APP_PREFIX):
            return True
        return identifier in self.allowed

    def reason(self, identifier: str) -> str:
        return "blocked" if identifier in self.blocked else "not_allowed"

    def merged(self, other: AppPolicy) -> AppPolicy:
        # Several profiles combine as the device does: allow lists intersect, block lists add up.
        if self.allowed is None:
            allowed = other.allowed
        elif other.allowed is None:
            allowed = self.allowed
        else:
            allowed = self.allowed & other.allowed
        return AppPolicy(allowed, self.blocked | other.blocked)


@dataclass(frozen=True)
class ExpectedProfile:
    """A profile the device should have; payload_uuid None accepts any version.

    `acknowledged_at`: when the device acknowledged installing this very version. A ProfileList
    answered before then shows the device as it was before the install, so it cannot say the
    profile is missing or outdated."""

    identifier: str
    payload_uuid: str | None = None
    name: str | None = None
    acknowledged_at: datetime | None = None


def _app_ids(apps: Iterable[Mapping[str, Any]], platform: str) -> frozenset[str]:
    key = "bundle_id" if platform == "apple" else "package_name"
    return frozenset(str(app[key]) for app in apps if app.get(key))


def app_policy_from_specs(specs: Iterable[Mapping[str, Any]], platform: str = "apple") -> AppPolicy | None:
    """The app rules of profile specs (profiles.spec form): their restrictions payloads' lists."""
    policy: AppPolicy | None = None
    for spec in specs:
        for payload in spec.get("payloads", []):
            if payload.get("kind") != "restrictions":
                continue
            settings = payload.get("settings") or {}
            if "app_allow_list" not in settings and "app_block_list" not in settings:
                continue
            allowed = _app_ids(settings["app_allow_list"], platform) if "app_allow_list" in settings else None
            found = AppPolicy(allowed, _app_ids(settings.get("app_block_list", []), platform))
            policy = found if policy is None else policy.merged(found)
    return policy


AppPolicySource = Callable[[Session, Device], AppPolicy | None]
ExpectedProfilesSource = Callable[[Session, Device], list[ExpectedProfile] | None]
APP_POLICY_SOURCES: HookPoint[AppPolicySource] = HookPoint("app policy sources")
EXPECTED_PROFILE_SOURCES: HookPoint[ExpectedProfilesSource] = HookPoint("expected profile sources")


def allowed_apps_for(session: Session, device: Device) -> AppPolicy | None:
    policy: AppPolicy | None = None
    for source in APP_POLICY_SOURCES.hooks(session):
        found = source(session, device)
        if found is not None:
            policy = found if policy is None else policy.merged(found)
    return policy


def expected_profiles_for(session: Session, device: Device) -> list[ExpectedProfile] | None:
    expected: list[ExpectedProfile] | None = None
    for source in EXPECTED_PROFILE_SOURCES.hooks(session):
        found = source(session, device)
        if found is not None:
            expected = [*(expected or []), *found]
    return expected


# session.info key: the devices evaluated together (evaluate_devices's batch, a fleet check's
# page). A source may read what it needs for all of them at its first device and keep it in
# `reads` for the others: nothing the sources read is written while a batch is evaluated.
BATCH_KEY = "hikeshi.compliance.batch"


@dataclass
class Batch:
    device_ids: list[int]
    reads: dict[str, Any] = field(default_factory=dict)


@contextmanager
def evaluated_together(session: Session, device_ids: list[int]) -> Iterator[Batch]:
    batch = session.info[BATCH_KEY] = Batch(device_ids)
    try:
        yield batch
    finally:
        session.info.pop(BATCH_KEY, None)


def batch_of(session: Session) -> Batch | None:
    found: Batch | None = session.info.get(BATCH_KEY)
    return found


@dataclass(frozen=True)
class OsUpdateTarget:
    """The OS version a device's unit wants it on and the moment it is due (None: no deadline)."""

    version: str
    due_at: datetime | None


OsUpdateTargetSource = Callable[[Session, Device], OsUpdateTarget | None]
# Connected by the wiring to the OS update service (mdm.services.osupdates.compliance_source).
OS_UPDATE_TARGET_SOURCES: HookPoint[OsUpdateTargetSource] = HookPoint("os update target sources")


def os_update_target_for(session: Session, device: Device) -> OsUpdateTarget | None:
    for source in OS_UPDATE_TARGET_SOURCES.hooks(session):
        found = source(session, device)
        if found is not None:
            return found
    return None
