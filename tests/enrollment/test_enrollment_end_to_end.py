"""A simulated iPad enrolls over HTTP: profile → SCEP with its challenge → Authenticate and
TokenUpdate signed with the issued identity → in the token's unit, the use counted."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment.profile import CONTENT_TYPE, MDM_PAYLOAD_IDENTIFIER
from mdm.ground.models import (
    AuditEvent,
    Device,
    DeviceCertificate,
    EnrollmentState,
    EnrollmentToken,
    EnrollmentTokenUse,
)
from mdm.ground.x509util import fingerprint
from tests.enrollment.helpers import challenge_of, payload, profile_dict
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient


def _enroll_ipad(client: Any, secret: str, topic: str, **scep_options: Any) -> tuple[SimulatedIPad, Any]:
    response = client.get(f"/enroll/{secret}")
    assert response.status_code == 200, response.data[:300]
    assert response.headers["Content-Type"] == CONTENT_TYPE
    profile = profile_dict(response.data)
    enrollment = ScepClient(client).enroll(challenge_of(profile), **scep_options)
    assert enrollment.reply.status == "0", enrollment.reply.fail_info
    ipad = SimulatedIPad(enrollment.reply.certificate, enrollment.key, topic=topic)
    return ipad, profile


@pytest.mark.parametrize(
    ("cipher", "method"),
    [("aes128_cbc", "POST"), ("aes256_cbc", "GET"), ("tripledes_3key", "POST"), ("tripledes_3key", "GET")],
)
def test_ipad_enrolls_into_the_token_unit(
    enroll_client: Any,
    session: Session,
    tree: Any,
    push_topic: str,
    make_token: Any,
    cipher: str,
    method: str,
) -> None:
    created = make_token(tree.ambulance, uses=1)
    ipad, profile = _enroll_ipad(enroll_client, created.secret, push_topic, cipher=cipher, method=method)

    mdm = payload(profile, "com.apple.mdm")
    assert mdm["PayloadIdentifier"] == MDM_PAYLOAD_IDENTIFIER
    assert mdm["Topic"] == push_topic
    assert mdm["IdentityCertificateUUID"] == payload(profile, "com.apple.security.scep")["PayloadUUID"]

    assert ipad.checkin(enroll_client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(enroll_client, ipad.token_update_body()).status_code == 200
    # The identity now works on the command channel too.
    assert ipad.connect(enroll_client, ipad.idle_body()).status_code == 200

    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    device = session.scalars(select(Device).where(Device.udid == ipad.udid)).one()
    assert device.org_unit_id == tree.ambulance.id
    assert device.enrollment_state == EnrollmentState.ENROLLED
    token = session.get(EnrollmentToken, created.token.id)
    assert token is not None and token.use_count == 1
    uses = session.scalars(select(EnrollmentTokenUse).where(EnrollmentTokenUse.token_id == token.id)).all()
    assert [u.device_id for u in uses] == [device.id]
    row = session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.fingerprint_sha256 == fingerprint(ipad.identity_cert)
        )
    ).one()
    assert row.device_id == device.id and row.enrollment_token_id == token.id
    actions = set(session.scalars(select(AuditEvent.action)))
    assert {
        "enrollment.profile_served",
        "enrollment_token.used",
        "enrollment.identity_issued",
        "device.org_unit_assigned",
        "device.enrolled_with_token",
        "device.enrolled",
    } <= actions


def test_second_device_with_a_one_use_token_is_refused(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    created = make_token(tree.pump, uses=1)
    first, _ = _enroll_ipad(enroll_client, created.secret, push_topic)
    assert first.checkin(enroll_client, first.authenticate_body()).status_code == 200

    # At profile download: the token is used up.
    second = enroll_client.get(f"/enroll/{created.secret}")
    assert second.status_code == 410
    assert "text/html" in second.headers["Content-Type"]
    assert "上限" in second.get_data(as_text=True)
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    assert session.get(EnrollmentToken, created.token.id).use_count == 1  # type: ignore[union-attr]


def test_two_profiles_fetched_before_enrolling_one_use_token_issues_one_identity(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    created = make_token(tree.pump, uses=1)
    profile_a = profile_dict(enroll_client.get(f"/enroll/{created.secret}").data)
    profile_b = profile_dict(enroll_client.get(f"/enroll/{created.secret}").data)
    assert challenge_of(profile_a) != challenge_of(profile_b)

    scep = ScepClient(enroll_client)
    assert scep.enroll(challenge_of(profile_a)).reply.status == "0"
    refused = scep.enroll(challenge_of(profile_b)).reply
    # At SCEP: FAILURE badRequest, and no second identity is recorded.
    assert (refused.status, refused.fail_info) == ("2", "2")
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    assert session.get(EnrollmentToken, created.token.id).use_count == 1  # type: ignore[union-attr]
    assert len(session.scalars(select(DeviceCertificate)).all()) == 1


def test_multi_use_token_places_each_device(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    created = make_token(tree.station, uses=3)
    udids = []
    for _ in range(3):
        ipad, _ = _enroll_ipad(enroll_client, created.secret, push_topic)
        assert ipad.checkin(enroll_client, ipad.authenticate_body()).status_code == 200
        udids.append(ipad.udid)
    assert enroll_client.get(f"/enroll/{created.secret}").status_code == 410
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    devices = session.scalars(select(Device).where(Device.udid.in_(udids))).all()
    assert {d.org_unit_id for d in devices} == {tree.station.id}
    assert session.get(EnrollmentToken, created.token.id).use_count == 3  # type: ignore[union-attr]


def test_issued_identity_cannot_speak_for_another_device(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    created = make_token(tree.pump, uses=1)
    ipad, _ = _enroll_ipad(enroll_client, created.secret, push_topic)
    assert ipad.checkin(enroll_client, ipad.authenticate_body()).status_code == 200
    impostor = SimulatedIPad(ipad.identity_cert, ipad.identity_key, topic=push_topic)
    # An identity conflict: refused with its reason (tests/security covers what it records).
    assert impostor.checkin(enroll_client, impostor.authenticate_body()).status_code == 403
