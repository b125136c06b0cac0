"""The Wi-Fi (EAP-TLS) certificates a tablet holds: how many it may get, and their revocation.

A Wi-Fi certificate opens the station's network to whoever holds the tablet. So a tablet may get
only a bounded number a day (a leaked agent credential cannot mint them without end), a new one
for the same Android key alias replaces the old, and when a wipe is sent (the tablet is lost or
stolen) or its record is taken out of service, every Wi-Fi certificate it holds is revoked at once
and leaves the device CA's revocation list (mdm.services.revocation) from then on.

A tablet of an AMAPI unit holds no certificate of its own: its unit's tablets share one identity
carried in the unit's policy (mdm.services.amapi.wifi_identity). Revoking what such a tablet holds
revokes that shared identity and marks it for renewal, which the unit's other tablets receive with
their next policy patch; the lost tablet, deleted from the enterprise, gets none."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import AmapiDevice, AmapiPolicy, Device, DeviceCertificate, IdentityPurpose
from mdm.services.devices import certificate_row_for

# An agent asks once per EAP-TLS network of its policy and again when a certificate nears its end;
# ten a day leaves room for a policy with several networks and a reinstalled agent.
ISSUES_PER_DAY = 10


class WifiCertificateLimit(Exception):
    """The tablet asked for more Wi-Fi certificates than a day allows."""


def check_issue_allowed(session: Session, device: Device) -> None:
    since = clock.now() - timedelta(days=1)
    issued = session.scalar(
        select(func.count())
        .select_from(DeviceCertificate)
        .where(
            DeviceCertificate.holder_device_id == device.id,
            DeviceCertificate.purpose == IdentityPurpose.WIFI,
            DeviceCertificate.created_at >= since,
        )
    )
    if (issued or 0) >= ISSUES_PER_DAY:
        raise WifiCertificateLimit(
            f"this tablet already received {ISSUES_PER_DAY} Wi-Fi certificates in the last 24 hours"
        )


def _live(device: Device) -> list:
    return [
        DeviceCertificate.holder_device_id == device.id,
        DeviceCertificate.purpose == IdentityPurpose.WIFI,
        DeviceCertificate.revoked_at.is_(None),
    ]


def replace_for_alias(session: Session, device: Device, alias: str) -> list[str]:
    """Revoke the tablet's live certificates for `alias` (the new one replaces them); fingerprints."""
    rows = session.scalars(
        select(DeviceCertificate).where(*_live(device), DeviceCertificate.key_alias == alias)
    )
    return _revoke(list(rows))


def revoke_held(session: Session, device: Device) -> list[str]:
    """Revoke every Wi-Fi certificate the tablet holds; their fingerprints (for the audit)."""
    revoked = _revoke(list(session.scalars(select(DeviceCertificate).where(*_live(device)))))
    policy = _amapi_unit_policy(session, device)
    if policy is not None:
        revoked += _revoke(_live_unit_identities(session, policy.org_unit_id))
        if policy.wifi_identity_expires_at is not None:
            # Renewed at the unit's next policy render (the amapi_policies job, every tick).
            policy.wifi_identity_expires_at = clock.now()
    return revoked


def unit_identity_alias(org_unit_id: int) -> str:
    return f"amapi-unit-{org_unit_id}"


def record_unit_identity(session: Session, cert: x509.Certificate, org_unit_id: int) -> list[str]:
    """Record an AMAPI unit's new shared identity (revocable like any Wi-Fi certificate) and
    revoke the one it replaces; the replaced fingerprints."""
    replaced = _revoke(_live_unit_identities(session, org_unit_id))
    row = certificate_row_for(cert, purpose=IdentityPurpose.WIFI)
    row.key_alias = unit_identity_alias(org_unit_id)
    session.add(row)
    return replaced


def _live_unit_identities(session: Session, org_unit_id: int) -> list[DeviceCertificate]:
    return list(
        session.scalars(
            select(DeviceCertificate).where(
                DeviceCertificate.purpose == IdentityPurpose.WIFI,
                DeviceCertificate.holder_device_id.is_(None),
                DeviceCertificate.key_alias == unit_identity_alias(org_unit_id),
                DeviceCertificate.revoked_at.is_(None),
            )
        )
    )


def _amapi_unit_policy(session: Session, device: Device) -> AmapiPolicy | None:
    """The AMAPI policy whose shared identity the tablet holds: the one it was enrolled with."""
    return session.scalars(
        select(AmapiPolicy)
        .join(AmapiDevice, AmapiDevice.policy_name == AmapiPolicy.policy_name)
        .where(AmapiDevice.device_id == device.id)
    ).first()


def _revoke(rows: list[DeviceCertificate]) -> list[str]:
    now = clock.now()
    for row in rows:
        row.revoked_at = now
    return [row.fingerprint_sha256 for row in rows]
