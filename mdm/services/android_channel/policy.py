"""The policy the agent enforces: the Android rendering of the profiles assigned to the device's
unit, with a version so an unchanged policy is not sent again (profiles.android_policy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.models import Device
from mdm.services.osupdates.android import system_update
from mdm.services.osupdates.policy import policy_for_unit
from profiles.android_policy import policy_for_device, policy_version


@dataclass(frozen=True)
class AgentPolicy:
    version: str
    policy: dict[str, Any]
    unsupported: list[str]

    def body(self) -> dict[str, Any]:
        return {"version": self.version, "policy": self.policy, "unsupported": list(self.unsupported)}


def current_policy(session: Session, device: Device, *, secret_key: str | None = None) -> AgentPolicy:
    """The agent's policy; with the instance secret it carries the Wi-Fi passphrases it needs."""
    found = policy_for_device(session, device, secret_key=secret_key)
    policy, version = dict(found.policy), str(found.version)
    # The unit's OS update policy (mdm.services.osupdates) rides in the same document.
    updates = system_update(policy_for_unit(session, device.org_unit_id))
    if updates is not None:
        policy["systemUpdate"] = updates
        version = policy_version(policy)
    return AgentPolicy(version, policy, [str(u) for u in found.unsupported])
