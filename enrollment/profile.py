"""The enrollment profile (.mobileconfig): CA certificate, SCEP identity and MDM payloads, signed.

The same payload identifiers are used for every enrollment and every identity renewal, so a
renewal profile installed over the enrollment profile replaces it in place: the device keeps its
MDM enrollment and switches to the new identity (IdentityCertificateUUID points at the new SCEP
payload).
"""

from __future__ import annotations

import plistlib
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from enrollment import envelope
from enrollment.tokens import issue_enrollment_challenge
from mdm.ground.audit import Actor
from mdm.ground.ca import device_ca_certificate, profile_signer, sha1_fingerprint
from mdm.ground.config import Settings
from mdm.ground.models import EnrollmentToken, OrgUnit
from mdm.ground.push.certificates import active_push_certificate
from mdm.ground.signing import sign_profile
from mdm.services import orgunits

PROFILE_IDENTIFIER = "jp.hikeshi.mdm.enrollment"
MDM_PAYLOAD_IDENTIFIER = PROFILE_IDENTIFIER + ".mdm"
SCEP_PAYLOAD_IDENTIFIER = PROFILE_IDENTIFIER + ".scep"
CA_PAYLOAD_IDENTIFIER = PROFILE_IDENTIFIER + ".ca"
SERVER_ANCHOR_IDENTIFIER = PROFILE_IDENTIFIER + ".server-anchor"
# Every right MDM can hold (1 | 2 | 4 | ... | 4096): fire HQ manages the whole tablet.
ACCESS_RIGHTS = 8191
SCEP_KEY_SIZE = 2048
# Key Usage bitmask: 1 signing (Mdm-Signature) | 4 encryption (encrypted renewal profiles).
SCEP_KEY_USAGE = 5
SCEP_PATH = "/scep"
CONTENT_TYPE = "application/x-apple-aspen-config"


class ServerAnchorError(RuntimeError):
    """HIKESHI_SERVER_ANCHOR_FILE cannot be read as PEM certificates."""


def server_anchor_certificates(settings: Settings) -> list[x509.Certificate]:
    """The private CA(s) behind the server's TLS certificate, when the operator names them."""
    if not settings.server_anchor_file:
        return []
    try:
        with open(settings.server_anchor_file, "rb") as fh:
            return x509.load_pem_x509_certificates(fh.read())
    except (OSError, ValueError) as exc:
        raise ServerAnchorError(
            f"HIKESHI_SERVER_ANCHOR_FILE {settings.server_anchor_file}: no readable PEM certificate ({exc})"
        ) from exc


def _anchor_payloads(settings: Settings) -> list[dict[str, Any]]:
    return [
        {
            "PayloadType": "com.apple.security.root",
            "PayloadVersion": 1,
            "PayloadIdentifier": f"{SERVER_ANCHOR_IDENTIFIER}.{n}",
            "PayloadUUID": _new_uuid(),
            "PayloadDisplayName": f"{settings.organization_name} サーバー認証局 (Server CA)",
            "PayloadCertificateFileName": f"hikeshi-server-ca-{n}.cer",
            "PayloadContent": cert.public_bytes(Encoding.DER),
        }
        for n, cert in enumerate(server_anchor_certificates(settings), 1)
    ]


class NoPushTopic(RuntimeError):
    """No active APNs push certificate: devices cannot enroll without its topic."""


@dataclass(frozen=True)
class RenderedProfile:
    payloads: list[dict[str, Any]]
    plist: bytes  # exactly the bytes inside the signature
    signed: bytes  # DER CMS SignedData, what is served or sent
    scep_payload_uuid: str


def push_topic(session: Session) -> str:
    row = active_push_certificate(session)
    if row is None or not row.topic:
        raise NoPushTopic(
            "no APNs push certificate has been imported; "
            "import one (hikeshi push-cert import) before enrolling devices"
        )
    return row.topic


def _new_uuid() -> str:
    return str(uuid.uuid4()).upper()


def enrollment_payloads(
    settings: Settings, *, ca_cert: x509.Certificate, challenge: str, topic: str
) -> tuple[list[dict[str, Any]], str]:
    """(PayloadContent, SCEP payload UUID) for a device identity obtained with `challenge`."""
    base = settings.public_url.rstrip("/")
    org = settings.organization_name
    scep_uuid = _new_uuid()
    ca_payload = {
        "PayloadType": "com.apple.security.root",
        "PayloadVersion": 1,
        "PayloadIdentifier": CA_PAYLOAD_IDENTIFIER,
        "PayloadUUID": _new_uuid(),
        "PayloadDisplayName": f"{org} 端末認証局 (Device CA)",
        "PayloadCertificateFileName": "hikeshi-device-ca.cer",
        "PayloadContent": ca_cert.public_bytes(Encoding.DER),
    }
    scep_payload = {
        "PayloadType": "com.apple.security.scep",
        "PayloadVersion": 1,
        "PayloadIdentifier": SCEP_PAYLOAD_IDENTIFIER,
        "PayloadUUID": scep_uuid,
        "PayloadDisplayName": "端末証明書 (Device identity)",
        "PayloadContent": {
            "URL": base + SCEP_PATH,
            "Name": "hikeshi",
            "Subject": [[["CN", f"Hikeshi device {_new_uuid()}"]]],
            "Challenge": challenge,
            "Keysize": SCEP_KEY_SIZE,
            "Key Type": "RSA",
            "Key Usage": SCEP_KEY_USAGE,
            "CAFingerprint": sha1_fingerprint(ca_cert),
            "Retries": 3,
            "RetryDelay": 10,
        },
    }
    mdm_payload = {
        "PayloadType": "com.apple.mdm",
        "PayloadVersion": 1,
        "PayloadIdentifier": MDM_PAYLOAD_IDENTIFIER,
        "PayloadUUID": _new_uuid(),
        "PayloadDisplayName": f"{org} MDM",
        "ServerURL": base + "/mdm/connect",
        "CheckInURL": base + "/mdm/checkin",
        "Topic": topic,
        "IdentityCertificateUUID": scep_uuid,
        "AccessRights": ACCESS_RIGHTS,
        "SignMessage": True,
        "CheckOutWhenRemoved": True,
        # No ServerCapabilities: Hikeshi serves the device channel only (no per-user
        # connections, no bootstrap or GetToken support), so it must not claim any.
    }
    anchors = _anchor_payloads(settings)
    if anchors:
        # A server certificate from a private CA: a root installed by a profile is not trusted
        # for TLS until someone enables it by hand, but the MDM client trusts what it is pinned to.
        pinned = [anchor["PayloadUUID"] for anchor in anchors]
        mdm_payload["ServerURLPinningCertificateUUIDs"] = pinned
        mdm_payload["CheckInURLPinningCertificateUUIDs"] = pinned
    return [ca_payload, *anchors, scep_payload, mdm_payload], scep_uuid


def _top_level(settings: Settings, description: str) -> dict[str, Any]:
    return {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": PROFILE_IDENTIFIER,
        "PayloadUUID": _new_uuid(),
        "PayloadDisplayName": f"{settings.organization_name} 端末登録 (Enrollment)",
        "PayloadOrganization": settings.organization_name,
        "PayloadDescription": description,
    }


def encode_plist(value: Any) -> bytes:
    return plistlib.dumps(value, fmt=plistlib.FMT_XML, sort_keys=True)


def profile_plist(settings: Settings, payloads: list[dict[str, Any]], description: str) -> bytes:
    return encode_plist({**_top_level(settings, description), "PayloadContent": payloads})


def encrypted_profile_plist(
    settings: Settings, payloads: list[dict[str, Any]], description: str, recipient: x509.Certificate
) -> bytes:
    """A profile whose payloads only the holder of `recipient`'s key can read (EncryptedPayloadContent)."""
    sealed = envelope.encrypt(encode_plist(payloads), recipient, "aes256_cbc").dump()
    return encode_plist(
        {**_top_level(settings, description), "IsEncrypted": True, "EncryptedPayloadContent": sealed}
    )


def _description(session: Session, unit: OrgUnit) -> str:
    ja = orgunits.path_label(session, unit)
    en = orgunits.path_label(session, unit, english=True)
    return (
        f"この端末を {ja} の端末として Hikeshi MDM に登録します。\n"
        f"Enrolls this device in Hikeshi MDM for {en}."
    )


def build_enrollment_profile(
    session: Session, settings: Settings, token: EnrollmentToken, *, actor: Actor
) -> RenderedProfile:
    """The signed enrollment profile for a usable token, with a fresh single-use challenge.

    Raises NoPushTopic before writing anything when enrollment cannot work; CANotReady when the
    CA does not exist.
    """
    topic = push_topic(session)
    ca_cert = device_ca_certificate(session)
    signer = profile_signer(session, settings)
    challenge = issue_enrollment_challenge(session, settings, token, actor=actor)
    payloads, scep_uuid = enrollment_payloads(settings, ca_cert=ca_cert, challenge=challenge, topic=topic)
    unit = session.get(OrgUnit, token.org_unit_id)
    description = _description(session, unit) if unit is not None else "Hikeshi MDM"
    plist = profile_plist(settings, payloads, description)
    return RenderedProfile(payloads, plist, sign_profile(plist, signer, [ca_cert]), scep_uuid)
