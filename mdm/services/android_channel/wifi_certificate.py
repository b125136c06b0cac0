"""Wi-Fi client certificates for the agent: EAP-TLS identities from the built-in CA.

The policy's EAP-TLS networks name a key pair alias (profiles.android_render.wifi_key_alias). The
agent generates that key pair itself with DevicePolicyManager.generateKeyPair (the Wi-Fi framework
cannot use an app Keystore key such as the agent's identity), sends a CSR for it, and installs the
answer with setKeyPairCertificate and grantKeyPairToWifiAuth.

What a device may obtain is bounded by what it is: the device is the one its request is
authenticated as, never one named in the body, and the alias must be one of its own policy's
networks, so no device can get a certificate for a network of another unit or in another device's
name. The certificate's purpose is `wifi`: it never authenticates on the agent channel nor on
/mdm/* (identity.authenticate, mdm.services.devices), and its key must not be the agent's identity
key (a Wi-Fi key is granted to the Wi-Fi framework; the identity key must stay the agent's alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from enrollment.issuance import audit_identity_issued
from mdm.ground.ca import device_ca, issue_device_identity
from mdm.ground.config import Settings
from mdm.ground.models import IdentityPurpose
from mdm.ground.x509util import to_pem
from mdm.services.android_channel.agent import PROTOCOL_VERSION, ProtocolError
from mdm.services.android_channel.csr import load_csr, same_key
from mdm.services.android_channel.identity import Credential, authenticate
from mdm.services.android_channel.policy import current_policy
from mdm.services.devices import certificate_row_for, device_actor
from mdm.services.wifi_certificates import WifiCertificateLimit, check_issue_allowed, replace_for_alias
from profiles.android_render import wifi_key_aliases


def issue_wifi_certificate(
    session: Session,
    settings: Settings,
    credential: Credential,
    read: Callable[[], dict[str, Any]],
    *,
    source_ip: str | None,
) -> dict[str, Any]:
    """Authenticate, check the alias against the device's own policy, issue; never commits."""
    authed = authenticate(session, settings, credential)
    device = authed.device
    data = read()
    alias = data["key_alias"]
    if alias not in wifi_key_aliases(current_policy(session, device).policy):
        raise ProtocolError(
            400, "bad_request", "key_alias: no EAP-TLS network of this device's policy uses it", "key_alias"
        )
    csr = load_csr(data["csr"])
    identity_cert = authed.certificate.pem
    if same_key(csr, identity_cert):
        raise ProtocolError(
            400,
            "bad_request",
            "csr: the Wi-Fi key must be its own key pair (generateKeyPair), not the agent's identity key",
            "csr",
        )
    try:
        check_issue_allowed(session, device)
    except WifiCertificateLimit as exc:
        raise ProtocolError(429, "too_many_certificates", str(exc), "key_alias") from exc
    replaced = replace_for_alias(session, device, alias)
    ca = device_ca(session, settings)
    # The RADIUS server sees this name: the device's serial, or its id when it reported none.
    name = (device.serial_number or f"hikeshi-android-{device.id}")[:64]
    cert = issue_device_identity(ca, csr.public_key(), name, days=settings.identity_cert_days)
    # Recorded (so it can be found and revoked) but never bound: like the Apple Wi-Fi identity,
    # it must not count as the device's identity anywhere.
    row = certificate_row_for(cert, purpose=IdentityPurpose.WIFI)
    row.holder_device_id = device.id
    row.key_alias = alias[:64]
    session.add(row)
    session.flush()
    audit_identity_issued(
        session,
        device_actor(device.udid or "", source_ip),
        row,
        {
            "purpose": "android_wifi",
            "certificate_purpose": IdentityPurpose.WIFI,
            "device_id": device.id,
            "key_alias": alias,
            "replaced_certificates": replaced,
        },
    )
    return {
        "protocol": PROTOCOL_VERSION,
        "key_alias": alias,
        "certificate": to_pem(cert),
        "certificate_chain": [to_pem(cert), to_pem(ca.certificate)],
        "not_after": cert.not_valid_after_utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
