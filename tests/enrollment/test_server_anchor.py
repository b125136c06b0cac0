"""A server certificate from a private CA: the enrollment profile carries that CA and pins the
MDM URLs to it; without HIKESHI_SERVER_ANCHOR_FILE (a public CA) it carries nothing extra."""

from __future__ import annotations

import plistlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from enrollment.profile import ServerAnchorError, build_enrollment_profile, enrollment_payloads
from mdm.ground import ca as ca_service
from mdm.ground.config import Settings
from tests.enrollment.conftest import ADMIN
from tests.enrollment.helpers import payload, signed_content
from tests.support import pki
from tests.support.apple_schema import check_profile


def _roots(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in payloads if p["PayloadType"] == "com.apple.security.root"]


def test_private_server_ca_is_carried_and_pinned(
    tmp_path: Path,
    session: Session,
    tree: Any,
    make_token: Any,
    push_topic: str,
    enroll_settings: Settings,
    provisioned_ca: ca_service.Credential,
) -> None:
    server_ca, _ = pki.make_ca("HQ private server CA")
    settings = replace(enroll_settings, server_anchor_file=str(pki.write_pem(tmp_path / "ca.pem", server_ca)))
    rendered = build_enrollment_profile(session, settings, make_token(tree.ambulance).token, actor=ADMIN)
    session.commit()
    profile = plistlib.loads(signed_content(rendered.signed))
    assert check_profile(profile, platform="iOS") == []
    roots = _roots(profile["PayloadContent"])
    device_ca, anchor = roots
    assert device_ca["PayloadContent"] == provisioned_ca.certificate.public_bytes(Encoding.DER)
    assert anchor["PayloadContent"] == server_ca.public_bytes(Encoding.DER)
    mdm = payload(profile, "com.apple.mdm")
    assert mdm["ServerURLPinningCertificateUUIDs"] == [anchor["PayloadUUID"]]
    assert mdm["CheckInURLPinningCertificateUUIDs"] == [anchor["PayloadUUID"]]


def test_public_ca_adds_nothing_and_a_bad_anchor_file_is_named(
    tmp_path: Path, enroll_settings: Settings, provisioned_ca: ca_service.Credential
) -> None:
    payloads, _ = enrollment_payloads(
        enroll_settings, ca_cert=provisioned_ca.certificate, challenge="c", topic="com.apple.mgmt.x"
    )
    assert len(_roots(payloads)) == 1
    mdm = next(p for p in payloads if p["PayloadType"] == "com.apple.mdm")
    assert "ServerURLPinningCertificateUUIDs" not in mdm
    broken = tmp_path / "not-a-cert.pem"
    broken.write_text("hello")
    with pytest.raises(ServerAnchorError, match="HIKESHI_SERVER_ANCHOR_FILE"):
        enrollment_payloads(
            replace(enroll_settings, server_anchor_file=str(broken)),
            ca_cert=provisioned_ca.certificate,
            challenge="c",
            topic="com.apple.mgmt.x",
        )
