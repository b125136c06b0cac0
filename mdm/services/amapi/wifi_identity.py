"""The EAP-TLS Wi-Fi identity of an AMAPI unit: a client certificate from the built-in CA with a
key made here, carried as PKCS#12 in the unit policy's ONC `Certificates` and referenced by the
unit's EAP-TLS networks (`ClientCertType` Ref).

Why this path and not a certificate-provider app (docs/amapi.md, "Wi-Fi certificates"): the
identity arrives with the policy, through Google, the one channel an AMAPI tablet has anyway; the
tablet needs no route to Hikeshi's CA before it can join the Wi-Fi (which is often the only way
onto the network the CA is on), and nothing has to be built or installed besides Android Device
Policy. The cost: the key is made on the server and travels inside the policy (which AMAPI keeps
encrypted, with a second layer for private keys), and one identity serves a unit's tablets,
because an AMAPI policy is per unit: a lost tablet is answered by renewing its unit's identity
(`renew_unit_identity`), which the unit's other tablets receive with their next policy. A wipe
sent to a tablet of the unit does that (mdm.services.wifi_certificates.revoke_held): the old
identity is revoked and listed in the device CA's CRL, the new one patched to the others.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.ca import device_ca, issue_device_identity
from mdm.ground.config import Settings
from mdm.ground.models import AmapiPolicy
from mdm.ground.secretbox import seal, unseal
from mdm.services.wifi_certificates import record_unit_identity

PURPOSE = "amapi-wifi-identity"
# An identity this close to its end is replaced at the next policy sync.
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class WifiIdentity:
    pkcs12_b64: str
    expires_at: datetime


def _issue(session: Session, settings: Settings, unit_id: int) -> tuple[bytes, x509.Certificate]:
    ca = device_ca(session, settings)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue_device_identity(
        ca, key.public_key(), f"wifi unit {unit_id}", days=settings.identity_cert_days
    )
    data = pkcs12.serialize_key_and_certificates(
        f"hikeshi-wifi-unit-{unit_id}".encode(), key, cert, [ca.certificate], NoEncryption()
    )
    return data, cert


def unit_identity(session: Session, settings: Settings, row: AmapiPolicy) -> WifiIdentity:
    """The unit's identity: the stored one, or a new one when none is stored or it nears its end."""
    now = clock.now()
    if (
        row.wifi_identity_sealed is None
        or row.wifi_identity_expires_at is None
        or (row.wifi_identity_expires_at - RENEW_BEFORE <= now)
    ):
        renew_unit_identity(session, settings, row)
    assert row.wifi_identity_sealed is not None and row.wifi_identity_expires_at is not None
    data = unseal(settings.secret_key, PURPOSE, row.wifi_identity_sealed)
    return WifiIdentity(base64.b64encode(data).decode("ascii"), row.wifi_identity_expires_at)


def renew_unit_identity(session: Session, settings: Settings, row: AmapiPolicy) -> None:
    """A new identity for the unit (the next policy sync patches it to the unit's tablets)."""
    data, cert = _issue(session, settings, row.org_unit_id)
    row.wifi_identity_sealed = seal(settings.secret_key, PURPOSE, data)
    row.wifi_identity_expires_at = cert.not_valid_after_utc
    # Recorded like every Wi-Fi certificate, so the device CA's CRL lists the one this replaces
    # (a lost tablet of the unit still carries it) and the RADIUS server refuses it.
    record_unit_identity(session, cert, row.org_unit_id)
