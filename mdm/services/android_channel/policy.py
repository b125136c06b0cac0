"""The policy the agent enforces: the Android rendering of the profiles assigned to the device's
unit, with a version so an unchanged policy is not sent again (profiles.android_policy), and the
units' required and blocked apps (mdm.services.apps.android) with where to download each APK."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.models import Device
from mdm.services.apps.android import android_apps_part
from profiles.android_policy import merge_policy, policy_for_device, policy_version


@dataclass(frozen=True)
class AgentPolicy:
    version: str
    policy: dict[str, Any]
    unsupported: list[str]
    # Where the policy's own APKs are (URL, SHA-256, signing certificate): not part of AMAPI.
    app_sources: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": self.version,
            "policy": self.policy,
            "unsupported": list(self.unsupported),
        }
        if self.app_sources:
            body["app_sources"] = list(self.app_sources)
        return body


def current_policy(
    session: Session, device: Device, *, secret_key: str | None = None, public_url: str | None = None
) -> AgentPolicy:
    """The agent's policy; with the instance secret it carries the Wi-Fi passphrases it needs."""
    found = policy_for_device(session, device, secret_key=secret_key)
    policy, unsupported = dict(found.policy), [str(u) for u in found.unsupported]
    apps = android_apps_part(session, device, public_url=public_url)
    if not apps.applications and not apps.unsupported:
        return AgentPolicy(str(found.version), policy, unsupported)
    # The units' app rules join the profiles' lists; the stricter install type wins a clash.
    unsupported += [
        f"app rules: {clash}" for clash in merge_policy(policy, {"applications": apps.applications})
    ]
    unsupported += apps.unsupported
    version = policy_version({"policy": policy, "app_sources": apps.sources})
    return AgentPolicy(version, policy, unsupported, apps.sources)
