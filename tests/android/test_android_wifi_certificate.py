"""EAP-TLS Wi-Fi for the agent (protocol section 7.2): the policy names a key pair alias, the agent
generates that key pair on the device, the built-in CA issues its certificate with purpose `wifi`,
and that certificate opens nothing but the network."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, DeviceCertificate, IdentityPurpose
from mdm.ground.x509util import fingerprint
from profiles.assignment import assign_profile
from profiles.service import create_profile
from tests.enrollment.conftest import ADMIN
from tests.profiles.samples import spec_with, station_wifi
from tests.support.android_agent import PREFIX, ReferenceAgent


def _assign_station_wifi(app: Any, unit: Any, identifier: str = "jp.fire.test.wifi") -> None:
    hikeshi = app.extensions["hikeshi"]
    with transaction(hikeshi.session_factory) as s:
        profile = create_profile(
            s,
            ADMIN,
            spec_with({"kind": "wifi", "key": "station", "settings": station_wifi()}, identifier=identifier),
        )
        assign_profile(s, hikeshi.settings, profile, s.get(type(unit), unit.id), actor=ADMIN)


def test_the_agent_generates_its_wifi_key_and_the_onc_reference_resolves(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    agent = agent_factory(serial_number="R52TWIFI001")
    agent.enroll(android_token())

    [network] = agent.eap_tls_networks()
    eap = network["WiFi"]["EAP"]
    assert eap["ClientCertKeyPairAlias"] == "hikeshi-wifi-" + network["GUID"].lower()
    assert "ClientCertRef" not in eap
    assert agent.wifi_errors == {}
    assert agent.wifi_network_resolves(network)
    key, chain = agent.keychain[eap["ClientCertKeyPairAlias"]]
    # Its own key, not the agent identity's; issued by the same built-in CA, named by the server.
    assert key.public_key().public_numbers() != agent.key.public_key().public_numbers()
    assert chain[1] == agent.chain[1]
    assert chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "R52TWIFI001"

    session.rollback()
    session.expire_all()
    row = session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fingerprint(chain[0]))
    ).one()
    # Recorded with its purpose and bound to no device: it is never anyone's identity.
    assert row.purpose == IdentityPurpose.WIFI and row.device_id is None
    event = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "enrollment.identity_issued", AuditEvent.target_id == str(row.id)
        )
    ).one()
    assert event.details["purpose"] == "android_wifi" and event.details["device_id"] == agent.device_id

    # A later sync with the same policy asks for nothing new.
    before = len(agent.keychain)
    agent.sync()
    assert len(agent.keychain) == before


def test_a_device_cannot_get_a_certificate_for_another_units_network_or_device(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    victim = agent_factory(serial_number="R52TVICTIM1")
    victim.enroll(android_token(tree.ambulance))
    [network] = victim.eap_tls_networks()
    alias = network["WiFi"]["EAP"]["ClientCertKeyPairAlias"]

    attacker = agent_factory(serial_number="R52TATTACK1")
    attacker.enroll(android_token(tree.pump))  # a unit without that network
    assert attacker.eap_tls_networks() == []
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Naming the victim in the body changes nothing: the device is the one the request is signed by.
    response = attacker.request_wifi_certificate(alias, key, device_id=victim.device_id)
    assert response.status_code == 400
    assert response.json()["field"] == "key_alias"


def test_the_identity_key_is_refused_and_the_wifi_certificate_is_no_identity(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    agent = agent_factory(serial_number="R52TWIFI002")
    agent.enroll(android_token())
    [network] = agent.eap_tls_networks()
    alias = network["WiFi"]["EAP"]["ClientCertKeyPairAlias"]

    # The identity key granted to Wi-Fi would leave the agent's sole control: refused.
    reuse = agent.request_wifi_certificate(alias, agent.key)
    assert reuse.status_code == 400 and reuse.json()["field"] == "csr"

    # Someone holding the Wi-Fi key and certificate tries to speak as the device: refused.
    key, chain = agent.keychain[alias]
    impostor = ReferenceAgent(agent.http.base_url.__str__(), client=agent.http)
    impostor.key, impostor.certificate, impostor.device_id = key, chain[0], agent.device_id
    response = impostor.request("POST", f"{PREFIX}/sync", {"policy_version": None, "results": []})
    assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
    # ...and cannot buy itself another Wi-Fi certificate either.
    again = impostor.request_wifi_certificate(
        alias, rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    assert again.status_code == 401


def test_unsigned_and_malformed_requests_are_refused_naming_the_field(
    enroll_app: Any, agent_factory: Any, android_token: Any, tree: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    agent = agent_factory(serial_number="R52TWIFI003")
    agent.enroll(android_token())
    unsigned = agent.http.post(f"{PREFIX}/wifi-certificate", json={"key_alias": "x", "csr": "y"})
    assert unsigned.status_code == 401
    missing = agent.request("POST", f"{PREFIX}/wifi-certificate", {"csr": "y"})
    assert missing.status_code == 400 and missing.json()["field"] == "key_alias"
    [network] = agent.eap_tls_networks()
    alias = network["WiFi"]["EAP"]["ClientCertKeyPairAlias"]
    garbage = agent.request("POST", f"{PREFIX}/wifi-certificate", {"key_alias": alias, "csr": "not a csr"})
    assert garbage.status_code == 400 and garbage.json()["field"] == "csr"


def test_below_api_31_the_eap_tls_network_is_skipped(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    _assign_station_wifi(enroll_app, tree.ambulance)
    agent = agent_factory(serial_number="R52TWIFI030")
    agent.sdk_int = 30  # Android 11: no grantKeyPairToWifiAuth
    agent.enroll(android_token())
    assert len(agent.eap_tls_networks()) == 1 and agent.keychain == {}
    session.rollback()
    session.expire_all()
    issued = session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.purpose == IdentityPurpose.WIFI)
    ).all()
    assert issued == []
