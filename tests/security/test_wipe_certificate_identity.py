"""Issue 13, attack 1's ending and item 6: a 消去完了証明書 is signed only when EraseDevice is
acknowledged by the identity the tablet held when the wipe was approved. Over HTTP, with real SCEP
identities and real Mdm-Signature."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import commands.incidents as hotline
from mdm.ground.audit import Actor
from mdm.ground.models import Command, CommandResult, CommandStatus, EnrollmentState
from mdm.ground.models.incident import Incident, IncidentStatus, IncidentStep, WipeCertificate
from mdm.ground.x509util import fingerprint
from mdm.services.devices import allow_reenroll
from tests.enrollment.conftest import ADMIN
from tests.security.identity_support import (
    alerts,
    device_of,
    enrolled_ipad,
    fresh,
    scep_identity,
    snapshot,
)
from tests.support.apple_device import SimulatedIPad
from tests.support.people import person
from tests.web.helpers import bearer
from tests.web.helpers import make_token as make_api_token

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("duty-officer-sato", "approver", "192.0.2.11")
REPORT = {"caller_name": "山田 太郎", "caller_unit": "中央救急隊", "callback_number": "090-1234-5678"}


def _approved_wipe(session: Session, ipad: SimulatedIPad) -> tuple[int, str]:
    device = device_of(session, ipad.udid)
    incident = hotline.open_incident(session, device, REPORT, actor=OPERATOR)
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR), reason="盗難")
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    session.commit()
    return incident.id, erase.uuid


def _acknowledge_erase(client: Any, ipad: SimulatedIPad, erase_uuid: str) -> None:
    fetched = ipad.connect(client, ipad.idle_body())
    assert fetched.status_code == 200 and erase_uuid.encode() in fetched.data
    assert ipad.connect(client, ipad.result_body(erase_uuid)).status_code == 200


def test_the_approved_identity_earns_a_signed_certificate(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    incident_id, erase_uuid = _approved_wipe(session, ipad)
    fresh(session)
    assert session.get(Incident, incident_id).wipe_identities == [fingerprint(ipad.identity_cert)]
    _acknowledge_erase(enroll_client, ipad, erase_uuid)
    fresh(session)
    incident = session.get(Incident, incident_id)
    assert incident.status == IncidentStatus.WIPED
    result = session.scalars(select(CommandResult).where(CommandResult.status == "Acknowledged")).one()
    assert result.certificate_fingerprint == fingerprint(ipad.identity_cert)
    certificate = session.scalars(select(WipeCertificate)).one()
    assert certificate.incident_id == incident_id and certificate.signature
    response = enroll_client.get(
        f"/api/v1/incidents/{incident_id}/certificate", headers=bearer(make_api_token(session, "admin"))
    )
    assert response.status_code == 200


def test_a_takeover_after_approval_cannot_acknowledge_the_wipe(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    incident_id, erase_uuid = _approved_wipe(session, victim)
    cert, key = scep_identity(enroll_client, make_token(tree.pump).secret)
    impostor = SimulatedIPad(cert, key, udid=victim.udid, serial=victim.serial, topic=push_topic)
    before = snapshot(session)
    assert impostor.checkin(enroll_client, impostor.authenticate_body()).status_code == 403
    assert impostor.connect(enroll_client, impostor.idle_body()).status_code == 401
    assert impostor.connect(enroll_client, impostor.result_body(erase_uuid)).status_code == 401
    assert snapshot(session) == before
    fresh(session)
    assert session.get(Incident, incident_id).status == IncidentStatus.WIPE_APPROVED
    assert session.scalars(select(WipeCertificate)).all() == []
    response = enroll_client.get(
        f"/api/v1/incidents/{incident_id}/certificate", headers=bearer(make_api_token(session, "admin"))
    )
    assert response.status_code == 404


def test_an_identity_bound_after_approval_gets_no_certificate(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    incident_id, erase_uuid = _approved_wipe(session, ipad)
    # Between approval and acknowledgement the UDID binds a new identity (here an administrator
    # allowed it; a takeover would look the same from the server).
    allow_reenroll(session, device_of(session, ipad.udid), hours=1, actor=ADMIN)
    session.commit()
    cert, key = scep_identity(enroll_client, make_token(tree.ambulance).secret)
    other = SimulatedIPad(cert, key, udid=ipad.udid, serial=ipad.serial, topic=push_topic)
    assert other.checkin(enroll_client, other.authenticate_body()).status_code == 200
    assert other.checkin(enroll_client, other.token_update_body()).status_code == 200
    _acknowledge_erase(enroll_client, other, erase_uuid)

    fresh(session)
    incident = session.get(Incident, incident_id)
    erase = session.scalars(select(Command).where(Command.uuid == erase_uuid)).one()
    assert erase.status == CommandStatus.ACKNOWLEDGED  # what the device said is kept
    assert incident.status == IncidentStatus.WIPE_APPROVED  # but not claimed as a wipe
    assert incident.wiped_at is None
    assert device_of(session, ipad.udid).enrollment_state == EnrollmentState.ENROLLED
    assert session.scalars(select(WipeCertificate)).all() == []
    [step] = session.scalars(
        select(IncidentStep).where(
            IncidentStep.incident_id == incident_id, IncidentStep.action == "wipe_identity_mismatch"
        )
    ).all()
    assert step.flagged
    assert step.details["acknowledged_by_certificate"] == fingerprint(cert)
    assert step.details["approved_certificates"] == [fingerprint(ipad.identity_cert)]
    [alert] = alerts(session, "incident.wipe_identity_mismatch")
    assert alert.title.startswith("消去完了証明書を発行できません") and alert.severity == "critical"
    response = enroll_client.get(
        f"/api/v1/incidents/{incident_id}/certificate", headers=bearer(make_api_token(session, "admin"))
    )
    assert response.status_code == 404 and "identity" in response.get_data(as_text=True)
