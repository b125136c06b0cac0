"""A lost tablet's Wi-Fi certificates stop opening the station's network.

Attack: whoever holds a lost or stolen tablet (or its agent's credential) keeps the EAP-TLS
certificate it received, which the station's RADIUS server trusts until it expires. So the
certificate names its holder, a new one for the same key alias replaces the old, a tablet gets a
bounded number a day, and a wipe sent (or the record taken out of service) revokes them at once;
the device CA's revocation list served at /pki/device-ca.crl then lists them, checked here with
the real `openssl verify -crl_check`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

import commands.incidents as hotline
from enrollment.out_of_service import take_out_of_service
from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, Device, DeviceCertificate, Incident
from mdm.ground.x509util import fingerprint
from mdm.services import wifi_certificates
from tests.android.test_android_wifi_certificate import _assign_station_wifi
from tests.hotline.test_hotline_service import ADMIN, APPROVER, OPERATOR, REPORT
from tests.support.people import person
from tests.support.tools import require_tool


@pytest.fixture(scope="module")
def wifi_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _row(session: Any, cert: x509.Certificate) -> DeviceCertificate:
    session.rollback()
    session.expire_all()
    return session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fingerprint(cert))
    ).one()


def _agent_with_wifi(
    agent_factory: Any, android_token: Any, serial: str
) -> tuple[Any, str, x509.Certificate]:
    agent = agent_factory(serial_number=serial)
    agent.enroll(android_token())
    [network] = agent.eap_tls_networks()
    alias = network["WiFi"]["EAP"]["ClientCertKeyPairAlias"]
    return agent, alias, agent.keychain[alias][1][0]


def _crl(agent: Any) -> x509.CertificateRevocationList:
    response = agent.http.get("/pki/device-ca.crl")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(response.content)


def test_the_certificate_names_its_holder_and_a_new_one_for_the_alias_replaces_it(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any, wifi_key: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    agent, alias, first = _agent_with_wifi(agent_factory, android_token, "R52TREVOKE1")
    row = _row(session, first)
    assert row.holder_device_id == agent.device_id and row.key_alias == alias and row.device_id is None
    assert row.revoked_at is None

    answer = agent.request_wifi_certificate(alias, wifi_key)
    assert answer.status_code == 201, answer.text
    second = x509.load_pem_x509_certificate(answer.json()["certificate"].encode())
    assert _row(session, first).revoked_at is not None
    assert _row(session, second).revoked_at is None
    event = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "enrollment.identity_issued",
            AuditEvent.target_id == str(_row(session, second).id),
        )
    ).one()
    assert event.details["replaced_certificates"] == [fingerprint(first)]
    assert first.serial_number in {entry.serial_number for entry in _crl(agent)}


def test_a_tablet_gets_a_bounded_number_a_day(
    enroll_app: Any, agent_factory: Any, android_token: Any, tree: Any, wifi_key: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    agent, alias, _first = _agent_with_wifi(agent_factory, android_token, "R52TREVOKE2")
    statuses = [
        agent.request_wifi_certificate(alias, wifi_key).status_code
        for _ in range(wifi_certificates.ISSUES_PER_DAY)
    ]
    # The agent's own first request counted: the tenth more is one too many.
    assert statuses == [201] * (wifi_certificates.ISSUES_PER_DAY - 1) + [429]
    refused = agent.request_wifi_certificate(alias, wifi_key)
    assert refused.status_code == 429 and refused.json()["field"] == "key_alias"


def _write_pem(path: Path, *certs: x509.Certificate) -> str:
    path.write_bytes(b"".join(cert.public_bytes(Encoding.PEM) for cert in certs))
    return str(path)


def _openssl_verify(tmp_path: Path, ca: x509.Certificate, crl_der: bytes, cert: x509.Certificate) -> bool:
    openssl = require_tool("openssl")
    crl_path = tmp_path / "device-ca.crl.pem"
    subprocess.run(
        [openssl, "crl", "-inform", "DER", "-out", str(crl_path)],
        input=crl_der,
        check=True,
        capture_output=True,
    )
    ca_file = _write_pem(tmp_path / "ca.pem", ca)
    leaf = _write_pem(tmp_path / "leaf.pem", cert)
    # -crl_check: the RADIUS server's view (FreeRADIUS check_crl) of an EAP-TLS client certificate.
    done = subprocess.run(
        [openssl, "verify", "-crl_check", "-CAfile", ca_file, "-CRLfile", str(crl_path), leaf],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


def test_an_approved_wipe_revokes_the_tablets_wifi_certificates_at_once(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any, tmp_path: Path
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    lost, _alias, lost_cert = _agent_with_wifi(agent_factory, android_token, "R52TLOST001")
    _other, _alias2, other_cert = _agent_with_wifi(agent_factory, android_token, "R52TKEPT001")
    ca = lost.chain[1]
    assert _openssl_verify(tmp_path, ca, lost.http.get("/pki/device-ca.crl").content, lost_cert)

    factory = enroll_app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        incident = hotline.open_incident(s, s.get(Device, lost.device_id), REPORT, actor=OPERATOR)
        incident_id = incident.id
    with transaction(factory) as s:
        hotline.request_wipe(s, s.get(Incident, incident_id), actor=person(s, OPERATOR), reason="盗難")
    # Requested is not approved: nothing is revoked yet.
    assert _row(session, lost_cert).revoked_at is None
    with transaction(factory) as s:
        hotline.approve_wipe(s, s.get(Incident, incident_id), actor=person(s, APPROVER))

    # Revoked before the tablet has even synced: the erase may never reach it.
    assert _row(session, lost_cert).revoked_at is not None
    assert _row(session, other_cert).revoked_at is None
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "device.wifi_certificates_revoked")
    ).one()
    assert event.details["certificates"] == [fingerprint(lost_cert)]
    assert event.details["incident_id"] == incident_id

    crl_der = httpx.get(f"{str(lost.http.base_url).rstrip('/')}/pki/device-ca.crl").content
    crl = x509.load_der_x509_crl(crl_der)
    assert crl.is_signature_valid(ca.public_key())
    assert lost_cert.serial_number in {entry.serial_number for entry in crl}
    assert other_cert.serial_number not in {entry.serial_number for entry in crl}
    assert not _openssl_verify(tmp_path, ca, crl_der, lost_cert)
    assert _openssl_verify(tmp_path, ca, crl_der, other_cert)


def test_taking_a_record_out_of_service_revokes_its_wifi_certificates(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    agent, _alias, cert = _agent_with_wifi(agent_factory, android_token, "R52TOOS0001")
    factory = enroll_app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        take_out_of_service(s, s.get(Device, agent.device_id), actor=ADMIN, reason="工場出荷状態に戻された")
    assert _row(session, cert).revoked_at is not None
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "device.taken_out_of_service")
    ).one()
    assert fingerprint(cert) in event.details["revoked_certificates"]
    assert cert.serial_number in {entry.serial_number for entry in _crl(agent)}
