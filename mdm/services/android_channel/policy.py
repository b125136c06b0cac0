"""The policy the agent enforces: the Android rendering of the profiles assigned to the device's
unit (profiles.android_policy), the unit's OS update policy (`systemUpdate`), the units' required
and blocked apps (mdm.services.apps.android) with where to download each APK, the agent's
reporting settings of that unit (`reporting`, outside the AMAPI-shaped `policy`, which has no such
field), and a version over all of them, so an unchanged policy is not sent again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.models import Device, OrgUnit
from mdm.services.android_channel.location_reporting import location_reporting_along
from mdm.services.android_channel.policy_basis import policy_basis
from mdm.services.apps.android import android_apps_part
from mdm.services.orgunits import unit_chains
from mdm.services.osupdates.android import system_update
from mdm.services.osupdates.policy import policy_along
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


def unit_chain(session: Session, device: Device) -> list[OrgUnit]:
    """The device's unit and those above it, nearest first (empty outside any unit): one
    recursive query, never the whole tree."""
    if device.org_unit_id is None:
        return []
    return unit_chains(session, {device.org_unit_id}).get(device.org_unit_id, [])


def current_policy(
    session: Session,
    device: Device,
    *,
    secret_key: str | None = None,
    public_url: str | None = None,
    chain: Sequence[OrgUnit] | None = None,
) -> AgentPolicy:
    """The agent's policy; with the instance secret it carries the Wi-Fi passphrases it needs.
    `chain`: the device's unit and those above it, nearest first (`unit_chain`), when the caller
    has read it already; the OS update policy, the app rules and the location setting are each
    inherited along it, from one read of it."""
    if chain is None:
        chain = unit_chain(session, device)
    chain_ids = [unit.id for unit in chain]
    found = policy_for_device(session, device, secret_key=secret_key, chain_ids=chain_ids)
    policy, unsupported = dict(found.policy), [str(u) for u in found.unsupported]
    version = str(found.version)
    # The unit's OS update policy (mdm.services.osupdates) rides in the same document.
    updates = system_update(policy_along(session, chain_ids))
    if updates is not None:
        policy["systemUpdate"] = updates
        version = policy_version(policy)
    apps = android_apps_part(session, device, public_url=public_url, chain=chain_ids)
    app_sources: list[dict[str, Any]] = []
    if apps.applications or apps.unsupported:
        # The units' app rules join the profiles' lists; the stricter install type wins a clash.
        unsupported += [
            f"app rules: {clash}" for clash in merge_policy(policy, {"applications": apps.applications})
        ]
        unsupported += apps.unsupported
        app_sources = list(apps.sources)
        version = policy_version({"policy": policy, "app_sources": app_sources})
    reporting = {"location": location_reporting_along(chain)}
    if any(reporting.values()):
        version = policy_version({"policy": version, "reporting": reporting})
    return AgentPolicy(version, policy, unsupported, reporting, app_sources)


def policy_answer(
    session: Session,
    device: Device,
    *,
    agent_has: str | None,
    generation: int | None,
    secret_key: str,
    public_url: str | None,
    chain: Callable[[], Sequence[OrgUnit]],
) -> tuple[str, AgentPolicy | None]:
    """The version of the device's policy, and the policy when the agent has another version.

    When the agent has the version last built for the device, from the same basis (the policy
    generation the sync read, the device's fields now: policy_basis), nothing is read or rendered.
    Otherwise the policy is built (`chain` reads the unit chain, if no one has) and the device
    remembers its version and basis. `generation` None (not read): always built."""
    basis = None
    if generation is not None:
        basis = policy_basis(device, generation, secret_key=secret_key, public_url=public_url)
        if agent_has is not None and (device.agent_policy_basis, device.agent_policy_version) == (
            basis,
            agent_has,
        ):
            return agent_has, None
    policy = current_policy(session, device, secret_key=secret_key, public_url=public_url, chain=chain())
    if basis is not None:
        # The ORM writes the columns that changed, if any.
        device.agent_policy_basis, device.agent_policy_version = basis, policy.version
        device.agent_reports_location = bool(policy.reporting.get("location"))
    return policy.version, None if policy.version == agent_has else policy


def unit_reports_location(
    device: Device,
    *,
    generation: int | None,
    secret_key: str,
    public_url: str | None,
    chain: Callable[[], Sequence[OrgUnit]],
) -> bool:
    """Whether the device's unit has it report its location: what its last policy said, when that
    policy was built from what there is now (its basis), else read along the unit chain."""
    if generation is not None and device.agent_reports_location is not None:
        basis = policy_basis(device, generation, secret_key=secret_key, public_url=public_url)
        if device.agent_policy_basis == basis:
            return device.agent_reports_location
    return location_reporting_along(chain())
