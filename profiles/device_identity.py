"""EAP-TLS Wi-Fi identities from the built-in CA: a SCEP challenge per device, once, at delivery.

The shared signed rendering of a profile (profiles.signing) carries its SCEP payloads without a
challenge: one stored in it would be readable by every device that gets the profile, and usable by
any of them. Instead, an install of a profile that needs one is queued with a marker
(`DeviceIdentity`: profile id and version). When /mdm/connect hands the command to its device,
`make_for_device` (the CommandContext's ProfileDuties.install_for_device) issues a fresh
single-use challenge bound to that device (EnrollmentChallenge, stored hashed, expiring after the
SCEP challenge lifetime), renders the profile again with it and the device's name as the
certificate subject, and signs it. The challenge exists only in the bytes sent to the device: the
command's parameters and the audit log never hold it.

The SCEP URL and organisation are those of the shared rendering (read back from its plist), so the
device gets exactly the shared profile plus its own challenge and subject, with the same payload
UUIDs: a re-install does not make iOS forget the network.
"""

from __future__ import annotations

import plistlib
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from asn1crypto import cms
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from commands.command_type import DeliveryContext
from enrollment.tokens import hash_secret
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.ca import device_ca_certificate, profile_signer, sha1_fingerprint
from mdm.ground.config import Settings
from mdm.ground.models import ChallengePurpose, Device, EnrollmentChallenge, ProfileVersion
from mdm.ground.signing import sign_profile
from mdm.ground.x509util import to_pem
from profiles.apple_render import render_apple
from profiles.rendering import ChallengeRequest, RenderContext
from profiles.secret_settings import has_secrets

# EnrollmentChallenge.purpose of a Wi-Fi identity challenge (enrollment uses "enroll" / "renew").
WIFI_IDENTITY = ChallengePurpose.WIFI
CHALLENGE_LIFETIME = timedelta(minutes=60)
SCEP_PAYLOAD_TYPE = "com.apple.security.scep"
DELIVERY = Actor("system:profile-delivery", "system")


def needs_device_challenge(spec: Mapping[str, Any]) -> bool:
    """Whether a profile has an EAP-TLS identity requested from the built-in CA (no own SCEP URL)."""
    return any(
        payload["kind"] == "wifi"
        and payload["settings"].get("eap_type") == "EAP-TLS"
        and not (payload["settings"].get("scep") or {}).get("url")
        for payload in spec.get("payloads", [])
    )


def delivery_marker(profile_id: int, version: int) -> dict[str, int]:
    return {"profile_id": profile_id, "version": version}


def issue_wifi_challenge(
    session: Session, device: Device, *, lifetime: timedelta = CHALLENGE_LIFETIME
) -> str:
    """A fresh single-use challenge bound to `device`; only its hash is stored."""
    secret = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(
        EnrollmentChallenge(
            challenge_hash=hash_secret(secret),
            purpose=WIFI_IDENTITY,
            device_id=device.id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return secret


def unsigned_content(signed: bytes) -> bytes:
    """The plist a signed profile (DER CMS SignedData) encapsulates."""
    info = cms.ContentInfo.load(signed)
    return bytes(info["content"]["encap_content_info"]["content"].native)


def _builtin_scep_url(document: Mapping[str, Any], ca_fingerprint: bytes) -> str | None:
    # The renderer puts CAFingerprint only on SCEP payloads that ask the built-in CA.
    for payload in document.get("PayloadContent", []):
        if payload.get("PayloadType") == SCEP_PAYLOAD_TYPE:
            content = payload.get("PayloadContent") or {}
            if content.get("CAFingerprint") == ca_fingerprint:
                return str(content["URL"])
    return None


def _signer_settings(secret_key: str) -> Settings:
    # Unsealing the signer key needs only the instance secret; the rest is not read.
    return Settings(instance_path=Path("."), database_url="", secret_key=secret_key)


def make_for_device(keys: dict[str, Any], marker: dict[str, Any], context: DeliveryContext) -> dict[str, Any]:
    """The install as this device gets it: its own challenge and subject, the profile's secrets
    (Wi-Fi passphrases, sealed in the stored spec), signed."""
    device = context.device
    session = object_session(device)
    if session is None:
        return keys
    ca = device_ca_certificate(session)
    fingerprint = sha1_fingerprint(ca)
    shared = plistlib.loads(unsigned_content(keys["Payload"]))
    scep_url = _builtin_scep_url(shared, fingerprint)
    row = session.scalars(
        select(ProfileVersion).where(
            ProfileVersion.profile_id == marker["profile_id"], ProfileVersion.version == marker["version"]
        )
    ).first()
    if row is None or (scep_url is None and not has_secrets(row.spec)):
        return keys
    issued: list[str] = []

    def challenge(request: ChallengeRequest) -> str | None:
        if request.scep_url != scep_url:
            return None  # another CA's SCEP endpoint: our challenge means nothing there
        issued.append(request.payload_key)
        return issue_wifi_challenge(session, device)

    with session.begin_nested():
        context_for_device = RenderContext(
            scep_url=scep_url,
            scep_challenge=challenge if scep_url is not None else None,
            scep_ca_fingerprint=fingerprint,
            ca_certificate_pem=to_pem(ca),
            device_common_name=(device.serial_number or device.udid or f"device-{device.id}")[:64],
            organization=str(shared.get("PayloadOrganization") or "Hikeshi MDM"),
            secret_key=context.secret_key,
        )
        plist = render_apple(
            row.spec, context_for_device, version=row.version, payload_uuids=row.payload_uuids
        )
        signed = sign_profile(
            plist.content, profile_signer(session, _signer_settings(context.secret_key)), [ca]
        )
        if scep_url is not None:
            record_event(
                session,
                DELIVERY,
                "profile.device_identity_challenge_issued",
                "device",
                device.id,
                {"profile_id": row.profile_id, "version": row.version, "payloads": issued},
            )
    return {**keys, "Payload": signed}
