"""The policy the agent enforces: the Android rendering of the profiles assigned to the device's
unit (profiles.android_policy), the unit's OS update policy (`systemUpdate`), the units' required
and blocked apps (mdm.services.apps.android) with where to download each APK, the agent's
reporting settings of that unit (`reporting`, outside the AMAPI-shaped `policy`, which has no such
field), and a version over all of them, so an unchanged policy is not sent again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.models import Device
from mdm.services.android_channel.location_reporting import location_reporting
from mdm.services.apps.android import android_apps_part
from mdm.services.osupdates.android import system_update
from mdm.services.osupdates.policy import policy_for_unit
from profiles.android_policy import merge_policy, policy_for_device, policy_version


@dataclass(frozen=True)
class AgentPolicy:
    version: str
    policy: dict[str, Any]
    unsupported: list[str]
    reporting: dict[str, Any]
    # Where the policy's own APKs are (URL, SHA-256, signing certificate): not part of AMAPI.
    app_sources: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": self.version,
            "policy": self.policy,
            "reporting": dict(self.reporting),
            "unsupported": list(self.unsupported),
        }
        if self.app_sources:
            body["app_sources"] = list(self.app_sources)
        return body


def current_policy(
    session: Session,
    device: Device,
    *,
    secret_key: str | None = None,
    reports_location: bool | None = None,
    public_url: str | None = None,
) -> AgentPolicy:
    """The agent's policy; with the instance secret it carries the Wi-Fi passphrases it needs.
    `reports_location`: the unit's setting when the caller already read it."""
    found = policy_for_device(session, device, secret_key=secret_key)
    policy, unsupported = dict(found.policy), [str(u) for u in found.unsupported]
    version = str(found.version)
    # The unit's OS update policy (mdm.services.osupdates) rides in the same document.
    updates = system_update(policy_for_unit(session, device.org_unit_id))
    if updates is not None:
        policy["systemUpdate"] = updates
        version = policy_version(policy)
    apps = android_apps_part(session, device, public_url=public_url)
    app_sources: list[dict[str, Any]] = []
    if apps.applications or apps.unsupported:
        # The units' app rules join the profiles' lists; the stricter install type wins a clash.
        unsupported += [
            f"app rules: {clash}" for clash in merge_policy(policy, {"applications": apps.applications})
        ]
        unsupported += apps.unsupported
        app_sources = list(apps.sources)
        version = policy_version({"policy": policy, "app_sources": app_sources})
    if reports_location is None:
        reports_location = location_reporting(session, device.org_unit_id)
    reporting = {"location": reports_location}
    if any(reporting.values()):
        version = policy_version({"policy": version, "reporting": reporting})
    return AgentPolicy(version, policy, unsupported, reporting, app_sources)
