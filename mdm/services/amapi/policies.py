"""One AMAPI policy per AMAPI-mode unit: `enterprises/LC…/policies/unit-<id>`.

Its content is what the agent of a tablet in that unit would enforce (the same renderer and merge:
mdm.services.android_channel.policy.current_policy over profiles/android_render.py): passcode,
camera, apps (installType, BLOCKED), Wi-Fi, USB data access, OS updates; plus what only AMAPI has:
`statusReportingSettings` (the status reports inventory is built from), and the EAP-TLS networks'
client certificate carried in the policy (mdm.services.amapi.wifi_identity) instead of a key
pair an agent would make. It is patched (policies.patch) only when the SHA-256 of its canonical
JSON changed since the last patch; `sync_amapi_policies` re-checks every AMAPI unit (the
scheduler's `amapi_policies` job each tick, and at once after a unit's mode or token changes),
so a changed profile, assignment, app rule or unit setting reaches the tablets within a tick.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.amapi_client import AmapiClient, AmapiError
from mdm.ground.audit import SYSTEM, Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import AmapiPolicy, Device
from mdm.services.amapi.enterprise import EnterpriseError, bound_enterprise
from mdm.services.amapi.mode import amapi_unit_ids
from mdm.services.amapi.wifi_identity import unit_identity
from mdm.services.android_channel.policy import current_policy
from profiles.android_policy import policy_version

# What the tablets report in their status reports (STATUS_REPORT notifications, devices.get):
# the inventory, compliance and readiness of AMAPI tablets come from them.
STATUS_REPORTING = {
    "applicationReportsEnabled": True,
    "deviceSettingsEnabled": True,
    "softwareInfoEnabled": True,
    "memoryInfoEnabled": True,
    "networkInfoEnabled": True,
    "displayInfoEnabled": True,
    "powerManagementEventsEnabled": True,
    "hardwareStatusEnabled": True,
}


def policy_name(enterprise_name: str, org_unit_id: int) -> str:
    return f"{enterprise_name}/policies/unit-{org_unit_id}"


@dataclass
class RenderedUnitPolicy:
    policy: dict[str, Any]
    unsupported: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return policy_version(self.policy)


def render_unit_policy(session: Session, settings: Settings, row: AmapiPolicy) -> RenderedUnitPolicy:
    """The unit's Policy resource as it should be now."""
    # The agent's policy of a tablet of this unit: a device of the unit that exists only here
    # (never added to the session), so the profiles and app rules resolve along the unit path.
    stand_in = Device(platform="android", org_unit_id=row.org_unit_id)
    agent = current_policy(session, stand_in, secret_key=settings.secret_key)
    policy = copy.deepcopy(agent.policy)
    unsupported = list(agent.unsupported)
    policy["statusReportingSettings"] = dict(STATUS_REPORTING)
    _client_certificates(session, settings, row, policy)
    return RenderedUnitPolicy(policy, unsupported)


def _client_certificates(
    session: Session, settings: Settings, row: AmapiPolicy, policy: dict[str, Any]
) -> None:
    """EAP-TLS networks: the agent's device-made key pair (KeyPairAlias) becomes the unit's
    identity from the built-in CA, a PKCS#12 in the ONC Certificates referenced by GUID."""
    onc = policy.get("openNetworkConfiguration")
    if not onc:
        return
    certificates = onc.setdefault("Certificates", [])
    guid = f"hikeshi-wifi-identity-unit-{row.org_unit_id}"
    used = False
    for network in onc.get("NetworkConfigurations") or []:
        eap = (network.get("WiFi") or {}).get("EAP")
        if not eap or eap.get("ClientCertType") != "KeyPairAlias":
            continue
        eap.pop("ClientCertKeyPairAlias", None)
        eap["ClientCertType"] = "Ref"
        eap["ClientCertRef"] = guid
        used = True
    if used:
        identity = unit_identity(session, settings, row)
        certificates.append({"GUID": guid, "Type": "Client", "PKCS12": identity.pkcs12_b64})
    if not certificates:
        onc.pop("Certificates")


def unit_policy_row(session: Session, org_unit_id: int) -> AmapiPolicy | None:
    return session.scalars(select(AmapiPolicy).where(AmapiPolicy.org_unit_id == org_unit_id)).first()


def ensure_unit_policy_row(session: Session, enterprise_name: str, org_unit_id: int) -> AmapiPolicy:
    row = unit_policy_row(session, org_unit_id)
    if row is None:
        row = AmapiPolicy(
            org_unit_id=org_unit_id,
            policy_name=policy_name(enterprise_name, org_unit_id),
            content_sha256="",
            patched_at=clock.now(),
        )
        session.add(row)
        session.flush()
    return row


def sync_unit_policy(
    session: Session,
    settings: Settings,
    client: AmapiClient,
    org_unit_id: int,
    *,
    actor: Actor = SYSTEM,
    force: bool = False,
) -> tuple[AmapiPolicy, bool]:
    """Patch the unit's policy when its content changed (or `force`); returns the row and whether
    it was patched. AmapiError propagates (the caller records it: `record_policy_failure`)."""
    enterprise = bound_enterprise(session)
    if enterprise is None:
        raise EnterpriseError("enterprise", "no enterprise is bound yet")
    row = ensure_unit_policy_row(session, enterprise, org_unit_id)
    rendered = render_unit_policy(session, settings, row)
    sha = rendered.sha256
    if not force and row.version is not None and row.content_sha256 == sha:
        return row, False
    answer = client.call("PATCH", row.policy_name, body=rendered.policy)
    version = answer.get("version")
    row.version = int(version) if isinstance(version, str | int) and str(version).isdigit() else None
    row.content_sha256 = sha
    row.patched_at = clock.now()
    row.last_error = None
    row.last_error_at = None
    session.flush()
    record_event(
        session,
        actor,
        "amapi.policy_patched",
        "org_unit",
        org_unit_id,
        {
            "policy_name": row.policy_name,
            "version": row.version,
            "sha256": sha,
            "unsupported": rendered.unsupported[:20],
        },
    )
    return row, True


def record_policy_failure(session: Session, org_unit_id: int, exc: Exception) -> None:
    enterprise = bound_enterprise(session)
    if enterprise is None:
        return
    row = ensure_unit_policy_row(session, enterprise, org_unit_id)
    row.last_error = str(exc)[:512]
    row.last_error_at = clock.now()


def sync_amapi_policies(session: Session, settings: Settings, client: AmapiClient) -> dict[str, Any]:
    """Every AMAPI unit's policy brought up to date; a unit that fails is recorded and the others
    still go (each in a savepoint, so a failure leaves nothing half-written)."""
    patched, unchanged, failed = [], 0, []
    for unit_id in amapi_unit_ids(session):
        try:
            with session.begin_nested():
                _row, changed = sync_unit_policy(session, settings, client, unit_id)
        except (AmapiError, EnterpriseError) as exc:
            failed.append(unit_id)
            record_policy_failure(session, unit_id, exc)
            continue
        if changed:
            patched.append(unit_id)
        else:
            unchanged += 1
    return {"patched": patched, "unchanged": unchanged, "failed": failed}
