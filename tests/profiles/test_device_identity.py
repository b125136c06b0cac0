"""EAP-TLS Wi-Fi identities: the SCEP challenge is per device and one-time, made when the install
is delivered through /mdm/connect; the shared profile, the command and the audit log never hold it."""

from __future__ import annotations

import json
import plistlib
from typing import Any

import pytest
from sqlalchemy import select

from enrollment.tokens import hash_secret
from mdm.ground.audit import Actor
from mdm.ground.ca import device_ca_certificate
from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, Command, Device, DeviceCertificate, EnrollmentChallenge
from mdm.ground.x509util import fingerprint
from mdm.services import orgunits
from profiles.assignment import assign_profile
from profiles.device_identity import WIFI_IDENTITY, needs_device_challenge, unsigned_content
from profiles.service import create_profile_from_template
from profiles.signing import stored_apple_profile
from tests.profiles.samples import spec_with, station_wifi
from tests.profiles.test_assignment_e2e import ManagedIPad
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
IDENTIFIER = "jp.example.fd.station-wifi"


@pytest.fixture
def factory(app):
    return app.extensions["hikeshi"].session_factory


@pytest.fixture
def conf(app):
    return app.extensions["hikeshi"].settings


def _enroll(app: Any, device_ca: Any, name: str) -> ManagedIPad:
    cert, key = device_ca.issue_identity(name)
    ipad = SimulatedIPad(cert, key)
    client = app.test_client()
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    return ManagedIPad(ipad)


def _scep_payload(signed: bytes) -> dict[str, Any]:
    profile = plistlib.loads(unsigned_content(signed))
    [scep] = [p for p in profile["PayloadContent"] if p["PayloadType"] == "com.apple.security.scep"]
    return scep


def test_only_built_in_eap_tls_identities_need_a_device_challenge() -> None:
    assert needs_device_challenge(spec_with({"kind": "wifi", "settings": station_wifi()}))
    external = station_wifi(certificate_source="scep", scep={"url": "https://ca.example.jp/scep"})
    assert not needs_device_challenge(spec_with({"kind": "wifi", "settings": external}))
    psk = {"ssid": "FD", "security": "wpa2_personal", "password": "a-long-passphrase"}
    assert not needs_device_challenge(spec_with({"kind": "wifi", "settings": psk}))


def test_each_device_gets_its_own_one_time_challenge_at_delivery(app, factory, conf, device_ca):
    client = app.test_client()
    ipads = [_enroll(app, device_ca, f"ipad-{n}") for n in range(2)]
    for managed in ipads:
        managed.drain(client)  # the first inventory after enrollment
    with transaction(factory) as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
        for managed in ipads:
            device = s.scalars(select(Device).where(Device.udid == managed.ipad.udid)).one()
            orgunits.assign_device(s, device, hq, actor=ADMIN)
        profile = create_profile_from_template(s, ADMIN, "station-wifi", identifier=IDENTIFIER)
        assign_profile(s, conf, profile, hq, actor=ADMIN)
        profile_id = profile.id

    with factory() as s:
        shared = stored_apple_profile(s, profile_id, 1)
        assert shared is not None
        assert "Challenge" not in _scep_payload(shared.content)["PayloadContent"]
        installs = s.scalars(select(Command).where(Command.request_type == "InstallProfile")).all()
        assert [c.params["DeviceIdentity"] for c in installs] == [
            {"profile_id": profile_id, "version": 1}
        ] * 2

    challenges = []
    for managed in ipads:
        assert managed.drain(client) == ["InstallProfile"]
        signed = managed.signed_payloads[-1]
        scep = _scep_payload(signed)["PayloadContent"]
        challenges.append(scep["Challenge"])
        # The certificate subject names the device, not the profile.
        assert scep["Subject"][1] == [["CN", managed.ipad.serial]]
        assert "DeviceIdentity" not in managed.received[-1][1]
        assert "_DeviceIdentity" not in managed.received[-1][1]
    assert len(set(challenges)) == 2

    with factory() as s:
        rows = s.scalars(
            select(EnrollmentChallenge).where(EnrollmentChallenge.purpose == WIFI_IDENTITY)
        ).all()
        by_device = {row.device_id: row for row in rows}
        devices = {
            m.ipad.udid: s.scalars(select(Device).where(Device.udid == m.ipad.udid)).one().id for m in ipads
        }
        assert set(by_device) == set(devices.values())
        for managed, challenge in zip(ipads, challenges, strict=True):
            assert by_device[devices[managed.ipad.udid]].challenge_hash == hash_secret(challenge)
        # Neither the commands nor the audit trail hold a challenge.
        stored = json.dumps([c.params for c in s.scalars(select(Command))], default=str)
        trail = json.dumps([e.details for e in s.scalars(select(AuditEvent))], default=str)
        for challenge in challenges:
            assert challenge not in stored and challenge not in trail
        issued = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "profile.device_identity_challenge_issued")
        ).all()
        assert len(issued) == 2

    # The challenge works once, at the built-in CA.
    scep = ScepClient(client)
    first = scep.enroll(challenges[0], cipher="aes256_cbc", common_name=ipads[0].ipad.serial)
    assert first.reply.status == "0"
    again = ScepClient(client).enroll(challenges[0])
    assert (again.reply.status, again.reply.fail_info) == ("2", "2")
    with factory() as s:
        issued_cert = first.reply.certificate
        assert issued_cert.issuer == device_ca_certificate(s).subject
        wifi_rows = s.scalars(
            select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fingerprint(issued_cert))
        ).all()
        # Recorded by enrollment.issuance, but never bound as the device's MDM identity.
        assert len(wifi_rows) == 1 and wifi_rows[0].device_id is None
