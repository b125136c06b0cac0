"""The served enrollment profile: signed so `openssl cms -verify` accepts it against the CA,
byte-identical content, every payload conforming to Apple's published schema."""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment.profile import (
    ACCESS_RIGHTS,
    CONTENT_TYPE,
    PROFILE_IDENTIFIER,
    build_enrollment_profile,
    encrypted_profile_plist,
    profile_plist,
)
from mdm.ground import ca as ca_service
from mdm.ground.ca import sha1_fingerprint
from mdm.ground.config import Settings
from mdm.ground.models import EnrollmentChallenge
from tests.enrollment.conftest import ADMIN
from tests.enrollment.helpers import payload, signed_content
from tests.support.apple_schema import check_payload, check_profile
from tests.support.tools import require_tool


def _openssl_verify(tmp_path: Path, signed: bytes, ca: ca_service.Credential) -> bytes:
    openssl = require_tool("openssl")
    (tmp_path / "profile.mobileconfig").write_bytes(signed)
    (tmp_path / "ca.pem").write_bytes(ca.certificate.public_bytes(Encoding.PEM))
    out = tmp_path / "content.plist"
    result = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            str(tmp_path / "profile.mobileconfig"),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            "-binary",
            "-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    return out.read_bytes()


@pytest.mark.tool
def test_rendered_profile_verifies_with_openssl_byte_for_byte(
    tmp_path: Path,
    session: Session,
    tree: Any,
    make_token: Any,
    push_topic: str,
    enroll_settings: Settings,
    provisioned_ca: ca_service.Credential,
) -> None:
    created = make_token(tree.ambulance)
    rendered = build_enrollment_profile(session, enroll_settings, created.token, actor=ADMIN)
    session.commit()
    extracted = _openssl_verify(tmp_path, rendered.signed, provisioned_ca)
    assert extracted == rendered.plist
    assert b"\r\n" not in rendered.plist  # Binary signing: line endings untouched


@pytest.mark.tool
def test_served_profile_verifies_and_conforms(
    tmp_path: Path,
    enroll_client: Any,
    session: Session,
    tree: Any,
    make_token: Any,
    push_topic: str,
    provisioned_ca: ca_service.Credential,
) -> None:
    created = make_token(tree.ambulance)
    response = enroll_client.get(f"/enroll/{created.secret}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    extracted = _openssl_verify(tmp_path, response.data, provisioned_ca)
    assert extracted == signed_content(response.data)

    profile = plistlib.loads(extracted)
    assert check_profile(profile, platform="iOS") == []
    assert profile["PayloadIdentifier"] == PROFILE_IDENTIFIER
    assert (
        "中央消防署" in profile["PayloadDescription"] and "Chuo Fire Station" in profile["PayloadDescription"]
    )

    scep = payload(profile, "com.apple.security.scep")
    content = scep["PayloadContent"]
    assert content["URL"] == "https://mdm.test.invalid/scep"
    assert content["Keysize"] == 2048 and content["Key Type"] == "RSA"
    assert content["Subject"][0][0][0] == "CN" and content["Subject"][0][0][1].startswith("Hikeshi device ")
    assert content["CAFingerprint"] == sha1_fingerprint(provisioned_ca.certificate)
    mdm = payload(profile, "com.apple.mdm")
    assert mdm["ServerURL"] == "https://mdm.test.invalid/mdm/connect"
    assert mdm["CheckInURL"] == "https://mdm.test.invalid/mdm/checkin"
    assert mdm["Topic"] == push_topic
    assert mdm["IdentityCertificateUUID"] == scep["PayloadUUID"]
    assert mdm["AccessRights"] == ACCESS_RIGHTS == 8191
    assert mdm["SignMessage"] is True and mdm["CheckOutWhenRemoved"] is True
    root = payload(profile, "com.apple.security.root")
    assert root["PayloadContent"] == provisioned_ca.certificate.public_bytes(Encoding.DER)

    # The challenge is single-use and stored only as a hash.
    stored = session.scalars(select(EnrollmentChallenge)).all()
    assert len(stored) == 1 and content["Challenge"] not in stored[0].challenge_hash


def test_encrypted_renewal_profile_payloads_conform(
    session: Session, enroll_settings: Settings, provisioned_ca: ca_service.Credential
) -> None:
    from enrollment.profile import enrollment_payloads
    from tests.support.scep_client import open_envelope

    payloads, _ = enrollment_payloads(
        enroll_settings, ca_cert=provisioned_ca.certificate, challenge="c", topic="com.apple.mgmt.External.x"
    )
    for item in payloads:
        assert check_payload(item, platform="iOS") == []
    assert check_profile(plistlib.loads(profile_plist(enroll_settings, payloads, "d")), platform="iOS") == []
    sealed = plistlib.loads(
        encrypted_profile_plist(enroll_settings, payloads, "d", provisioned_ca.certificate)
    )
    plaintext, _ = open_envelope(sealed["EncryptedPayloadContent"], provisioned_ca.private_key)
    assert plistlib.loads(plaintext) == payloads


def test_without_push_certificate_enrollment_is_refused_clearly(
    enroll_client: Any, session: Session, tree: Any, make_token: Any
) -> None:
    created = make_token(tree.ambulance)
    response = enroll_client.get(f"/enroll/{created.secret}")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "APNs" in body and "Traceback" not in body
    assert session.scalars(select(EnrollmentChallenge)).all() == []


def test_profile_for_android_token_is_refused(
    enroll_client: Any, tree: Any, make_token: Any, push_topic: str
) -> None:
    created = make_token(tree.ambulance, platform="android")
    response = enroll_client.get(f"/enroll/{created.secret}")
    assert response.status_code == 409
    assert "Android" in response.get_data(as_text=True)


def test_head_request_issues_no_challenge(
    enroll_client: Any, session: Session, tree: Any, make_token: Any, push_topic: str
) -> None:
    created = make_token(tree.ambulance)
    response = enroll_client.head(f"/enroll/{created.secret}")
    assert response.status_code == 200 and response.headers["Content-Type"] == CONTENT_TYPE
    assert session.scalars(select(EnrollmentChallenge)).all() == []
