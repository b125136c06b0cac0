"""micromdm's `scepclient` (Debian package scep) enrolls against /scep on a real HTTP server."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment import tokens
from mdm.ground import ca as ca_service
from mdm.ground.config import Settings
from mdm.ground.models import DeviceCertificate, EnrollmentToken
from mdm.ground.x509util import fingerprint
from tests.enrollment.conftest import ADMIN, LiveServer
from tests.support.apple_device import SimulatedIPad
from tests.support.tools import require_tool

pytestmark = pytest.mark.tool


def _challenge(session: Session, settings: Settings, created: tokens.CreatedToken) -> str:
    secret = tokens.issue_enrollment_challenge(session, settings, created.token, actor=ADMIN)
    session.commit()
    return secret


def _scepclient(server: LiveServer, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require_tool("scepclient", "scep"),
            "-server-url",
            f"{server.url}/scep",
            "-private-key",
            str(workdir / "device.key"),
            "-cn",
            "Hikeshi device scepclient",
            *args,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _write_ca(path: Path, ca: ca_service.Credential) -> Path:
    path.write_bytes(ca.certificate.public_bytes(Encoding.PEM))
    return path


def test_scepclient_enrolls_and_openssl_verifies(
    live_server: LiveServer,
    tmp_path: Path,
    session: Session,
    tree: Any,
    make_token: Any,
    enroll_settings: Settings,
    provisioned_ca: ca_service.Credential,
) -> None:
    openssl = require_tool("openssl")
    created = make_token(tree.ambulance, uses=1)
    result = _scepclient(live_server, tmp_path, "-challenge", _challenge(session, enroll_settings, created))
    assert result.returncode == 0, result.stdout + result.stderr
    issued = tmp_path / "client.pem"
    assert issued.is_file()

    ca_file = _write_ca(tmp_path / "ca.pem", provisioned_ca)
    verify = subprocess.run(
        [openssl, "verify", "-CAfile", str(ca_file), str(issued)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip() == f"{issued}: OK"

    cert = x509.load_pem_x509_certificate(issued.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=Hikeshi device scepclient"
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    row = session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fingerprint(cert))
    ).one()
    assert row.enrollment_token_id == created.token.id
    assert session.get(EnrollmentToken, created.token.id).use_count == 1  # type: ignore[union-attr]


def test_scepclient_with_a_wrong_challenge_is_refused(
    live_server: LiveServer,
    tmp_path: Path,
    session: Session,
    tree: Any,
    make_token: Any,
    enroll_settings: Settings,
) -> None:
    created = make_token(tree.ambulance, uses=1)
    _challenge(session, enroll_settings, created)
    result = _scepclient(live_server, tmp_path, "-challenge", "not-the-challenge")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # scepclient parsed our FAILURE CertRep (it needs messageDigest, recipientNonce, failInfo).
    assert "failInfo" in output and "badRequest" in output, output
    assert not (tmp_path / "client.pem").exists()
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    assert session.scalars(select(DeviceCertificate)).all() == []
    assert session.get(EnrollmentToken, created.token.id).use_count == 0  # type: ignore[union-attr]


def test_scepclient_cannot_reuse_a_challenge(
    live_server: LiveServer,
    tmp_path: Path,
    session: Session,
    tree: Any,
    make_token: Any,
    enroll_settings: Settings,
) -> None:
    created = make_token(tree.ambulance, uses=5)
    challenge = _challenge(session, enroll_settings, created)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert _scepclient(live_server, first, "-challenge", challenge).returncode == 0
    again = _scepclient(live_server, second, "-challenge", challenge)
    assert again.returncode != 0 and "badRequest" in again.stdout + again.stderr


def test_scepclient_renews_a_bound_identity(
    live_server: LiveServer,
    enroll_client: Any,
    tmp_path: Path,
    session: Session,
    tree: Any,
    make_token: Any,
    enroll_settings: Settings,
    push_topic: str,
) -> None:
    """RenewalReq signed with the current identity (scepclient does this when the certificate exists)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    created = make_token(tree.pump, uses=1)
    assert (
        _scepclient(
            live_server, tmp_path, "-challenge", _challenge(session, enroll_settings, created)
        ).returncode
        == 0
    )
    cert = x509.load_pem_x509_certificate((tmp_path / "client.pem").read_bytes())
    key = load_pem_private_key((tmp_path / "device.key").read_bytes(), None)
    ipad = SimulatedIPad(cert, key, topic=push_topic)  # type: ignore[arg-type]
    assert ipad.checkin(enroll_client, ipad.authenticate_body()).status_code == 200

    renewal = _scepclient(live_server, tmp_path)  # client.pem exists: RenewalReq, no challenge
    assert renewal.returncode == 0, renewal.stdout + renewal.stderr
    renewed = x509.load_pem_x509_certificate((tmp_path / "client.pem").read_bytes())
    assert fingerprint(renewed) != fingerprint(cert)
    # The renewed identity speaks for the same device at once.
    renewed_ipad = SimulatedIPad(renewed, key, udid=ipad.udid, topic=push_topic)  # type: ignore[arg-type]
    assert renewed_ipad.connect(enroll_client, renewed_ipad.idle_body()).status_code == 200
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    assert session.get(EnrollmentToken, created.token.id).use_count == 1  # type: ignore[union-attr]
