"""A lost AMAPI tablet's Wi-Fi access ends with the wipe.

An AMAPI unit's tablets share one EAP-TLS identity carried in the unit's policy
(mdm.services.amapi.wifi_identity). Attack: the thief of one tablet keeps that identity and joins
the station's network. So approving the wipe revokes the shared identity at once (it appears in
the device CA's CRL, which the RADIUS server reads), and the unit's next policy carries a new one
to the tablets that are still the unit's."""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

import commands.incidents as hotline
from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.ca import ensure_ca
from mdm.ground.db import transaction
from mdm.ground.models import AmapiPolicy, AuditEvent, DeviceCertificate, OrgUnit
from mdm.ground.x509util import fingerprint
from mdm.services import revocation
from mdm.services.amapi.policies import sync_unit_policy
from mdm.services.wifi_certificates import unit_identity_alias
from profiles.assignment import assign_profile
from profiles.service import create_profile
from tests.amapi.test_amapi_core import UNIT_PROFILE
from tests.amapi.test_ops_flow import (  # noqa: F401 (fixtures)
    APPROVER,
    OPERATOR,
    Bound,
    _enrolled,
    _incident,
    bound,
    sim,
)
from tests.support.amapi_sim import AmapiSimulator
from tests.support.people import person


def _unit_identity_in_policy(simulator: AmapiSimulator, policy_name: str) -> x509.Certificate:
    onc = simulator.policies[policy_name]["openNetworkConfiguration"]
    client = next(c for c in onc["Certificates"] if c["Type"] == "Client")
    _key, cert, _chain = pkcs12.load_key_and_certificates(base64.b64decode(client["PKCS12"]), None)
    assert cert is not None
    return cert


def _live_identities(bound_unit: Bound) -> list[str]:
    with bound_unit.factory() as s:
        return list(
            s.scalars(
                select(DeviceCertificate.fingerprint_sha256).where(
                    DeviceCertificate.key_alias == unit_identity_alias(bound_unit.unit_id),
                    DeviceCertificate.revoked_at.is_(None),
                )
            )
        )


def test_an_approved_wipe_revokes_the_units_shared_identity_and_the_next_policy_renews_it(
    sim: AmapiSimulator,  # noqa: F811
    bound: Bound,  # noqa: F811
) -> None:
    with transaction(bound.factory) as s:
        ensure_ca(s, bound.settings)  # the built-in CA that issues the unit's identity
    with bound.factory() as s:
        profile = create_profile(s, SYSTEM, UNIT_PROFILE)
        assign_profile(s, bound.settings, profile, s.get(OrgUnit, bound.unit_id), actor=SYSTEM)
        row, patched = sync_unit_policy(s, bound.settings, bound.client, bound.unit_id)
        assert patched
        policy_name = row.policy_name
        s.commit()
    first = _unit_identity_in_policy(sim, policy_name)
    # The shared identity is recorded like any Wi-Fi certificate: revocable.
    assert _live_identities(bound) == [fingerprint(first)]

    _name, device_id = _enrolled(bound, sim, serial="R52TWIFILOST")
    with bound.factory() as s:
        incident = _incident(s, device_id)
        hotline.request_wipe(s, incident, actor=person(s, OPERATOR), reason="盗難")
        s.commit()
        # Requested is not approved: the identity still stands.
        assert _live_identities(bound) == [fingerprint(first)]
        hotline.approve_wipe(s, incident, actor=person(s, APPROVER), context=bound.context)
        incident_id = incident.id
        s.commit()

    assert _live_identities(bound) == []
    with bound.factory() as s:
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "device.wifi_certificates_revoked")
        ).one()
        assert event.details == {
            "incident_id": incident_id,
            "certificates": [fingerprint(first)],
            "reason": "wipe",
        }
        assert s.scalars(select(AmapiPolicy.wifi_identity_expires_at)).one() <= clock.now()
        crl = x509.load_der_x509_crl(revocation.device_ca_crl(s, bound.settings))
        assert first.serial_number in {entry.serial_number for entry in crl}

        # The unit's next policy carries a new identity to its other tablets.
        _row, patched = sync_unit_policy(s, bound.settings, bound.client, bound.unit_id)
        assert patched
        s.commit()
    second = _unit_identity_in_policy(sim, policy_name)
    assert second.serial_number != first.serial_number
    assert _live_identities(bound) == [fingerprint(second)]
    with bound.factory() as s:
        crl = x509.load_der_x509_crl(revocation.device_ca_crl(s, bound.settings))
        assert second.serial_number not in {entry.serial_number for entry in crl}
    assert sim.violations == []
