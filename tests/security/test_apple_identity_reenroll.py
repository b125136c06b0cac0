"""Issue 13, what must keep working: a tablet enrolls, renews, is wiped and comes back into its
unit with one scan, checks out and comes back, or is let re-enroll by an administrator (API, CLI),
and each rebinding revokes the identities it held before (audited)."""

from __future__ import annotations

import plistlib
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

import commands.incidents as hotline
from mdm.ground.audit import Actor
from mdm.ground.models import DeviceCertificate, EnrollmentState
from mdm.ground.x509util import fingerprint
from mdm.roots.cli import main
from tests.enrollment.conftest import ADMIN
from tests.security.identity_support import (
    alerts,
    device_of,
    enrolled_ipad,
    events,
    fresh,
    scep_identity,
    snapshot,
)
from tests.support.apple_device import SimulatedIPad
from tests.support.people import person
from tests.support.scep_client import RENEWAL_REQ, ScepClient
from tests.web.helpers import bearer
from tests.web.helpers import make_token as make_api_token

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("duty-officer-sato", "approver", "192.0.2.11")
REPORT = {"caller_name": "山田 太郎", "caller_unit": "中央救急隊", "callback_number": "090-1234-5678"}


def _rows(session: Session, device_id: int) -> dict[str, Any]:
    fresh(session)
    rows = session.scalars(select(DeviceCertificate).where(DeviceCertificate.device_id == device_id))
    return {row.fingerprint_sha256: row for row in rows}


def _comes_back(client: Any, ipad: SimulatedIPad, secret: str, topic: str) -> SimulatedIPad:
    """The same tablet (same UDID and serial) scans a QR code again: one new identity, two messages."""
    cert, key = scep_identity(client, secret)
    back = SimulatedIPad(cert, key, udid=ipad.udid, serial=ipad.serial, topic=topic)
    assert back.checkin(client, back.authenticate_body()).status_code == 200
    assert back.checkin(client, back.token_update_body()).status_code == 200
    assert back.connect(client, back.idle_body()).status_code == 200
    return back


def _assert_rebound(session: Session, old: SimulatedIPad, new: SimulatedIPad, reason: str) -> None:
    device = device_of(session, new.udid)
    assert device.enrollment_state == EnrollmentState.ENROLLED
    assert device.push_token == new.token_hex
    rows = _rows(session, device.id)
    assert rows[fingerprint(old.identity_cert)].revoked_at is not None
    assert rows[fingerprint(new.identity_cert)].revoked_at is None
    [event] = events(session, "device.identity_rebound")
    assert event.details["reason"] == reason
    assert event.details["revoked_certificates"] == [fingerprint(old.identity_cert)]
    assert event.details["certificate"] == fingerprint(new.identity_cert)
    assert alerts(session, "device.identity_conflict") == []


def test_enroll_and_renew_keep_one_device(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    renewal = ScepClient(enroll_client).enroll(
        None, message_type=RENEWAL_REQ, signer=(ipad.identity_cert, ipad.identity_key)
    )
    assert renewal.reply.status == "0"
    renewed = SimulatedIPad(renewal.reply.certificate, renewal.key, udid=ipad.udid, topic=push_topic)
    assert renewed.connect(enroll_client, renewed.idle_body()).status_code == 200
    assert renewed.checkin(enroll_client, renewed.token_update_body()).status_code == 200
    device = device_of(session, ipad.udid)
    rows = _rows(session, device.id)
    assert {r.purpose for r in rows.values()} == {"mdm_identity"}
    assert len(rows) == 2 and device.org_unit_id == tree.ambulance.id


def test_wiped_tablet_comes_back_into_its_unit_with_one_scan(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    device = device_of(session, ipad.udid)
    incident = hotline.open_incident(session, device, REPORT, actor=OPERATOR)
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR), reason="盗難の疑い")
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    session.commit()
    fetched = ipad.connect(enroll_client, ipad.idle_body())
    assert fetched.status_code == 200 and erase.uuid.encode() in fetched.data
    assert ipad.connect(enroll_client, ipad.result_body(erase.uuid)).status_code == 200
    assert device_of(session, ipad.udid).enrollment_state == EnrollmentState.RETIRED
    # The wiped tablet's old identity cannot speak any more (it was erased with the tablet).
    assert ipad.connect(enroll_client, ipad.idle_body()).status_code == 403

    back = _comes_back(enroll_client, ipad, make_token(tree.ambulance).secret, push_topic)
    _assert_rebound(session, ipad, back, "retired")
    assert device_of(session, ipad.udid).org_unit_id == tree.ambulance.id
    assert ipad.connect(enroll_client, ipad.idle_body()).status_code == 401


def test_checked_out_tablet_comes_back(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.pump).secret, push_topic)
    assert ipad.checkin(enroll_client, ipad.checkout_body()).status_code == 200
    assert device_of(session, ipad.udid).enrollment_state == EnrollmentState.UNENROLLED
    back = _comes_back(enroll_client, ipad, make_token(tree.pump).secret, push_topic)
    _assert_rebound(session, ipad, back, "unenrolled")
    assert ipad.connect(enroll_client, ipad.idle_body()).status_code == 401


def test_admin_allows_reenrollment_through_the_api(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    device = device_of(session, ipad.udid)
    # Restored from a backup without a CheckOut: refused until an administrator says so.
    cert, key = scep_identity(enroll_client, make_token(tree.ambulance).secret)
    restored = SimulatedIPad(cert, key, udid=ipad.udid, serial=ipad.serial, topic=push_topic)
    assert restored.checkin(enroll_client, restored.authenticate_body()).status_code == 403

    path = f"/api/v1/devices/{device.id}/reenroll-allowance"
    operator = bearer(make_api_token(session, "operator"))
    admin = bearer(make_api_token(session, "admin"))
    assert enroll_client.post(path, json={"hours": 4}, headers=operator).status_code == 403
    for bad in ({}, {"hours": 0}, {"hours": 169}, {"hours": "4"}):
        refused = enroll_client.post(path, json=bad, headers=admin)
        assert refused.status_code in (400, 422) and "hours" in refused.get_data(as_text=True)
    before = snapshot(session)
    for bad in ({}, {"hours": 0}):
        assert enroll_client.post(path, json=bad, headers=admin).status_code in (400, 422)
    assert snapshot(session) == before  # refused calls write nothing
    allowed = enroll_client.post(path, json={"hours": 4}, headers=admin)
    assert allowed.status_code == 200, allowed.get_data(as_text=True)
    assert allowed.get_json()["reenroll_allowed_until"]
    [granted] = events(session, "device.reenroll_allowed")
    assert granted.details["hours"] == 4

    assert restored.checkin(enroll_client, restored.authenticate_body()).status_code == 200
    assert restored.checkin(enroll_client, restored.token_update_body()).status_code == 200
    device = device_of(session, ipad.udid)
    assert device.reenroll_allowed_until is None  # used up by the binding
    rows = _rows(session, device.id)
    assert rows[fingerprint(ipad.identity_cert)].revoked_at is not None
    [rebound] = events(session, "device.identity_rebound")
    assert rebound.details["reason"] == "reenroll_allowed" and rebound.details["allowed_by"]
    # Used up: a third identity is a conflict again.
    cert3, key3 = scep_identity(enroll_client, make_token(tree.ambulance).secret)
    third = SimulatedIPad(cert3, key3, udid=ipad.udid, serial=ipad.serial, topic=push_topic)
    assert third.checkin(enroll_client, third.authenticate_body()).status_code == 403


def test_allowance_expires(
    frozen_clock: Any, enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    from mdm.services.devices import allow_reenroll

    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    allow_reenroll(session, device_of(session, ipad.udid), hours=2, actor=ADMIN)
    session.commit()
    frozen_clock.advance(hours=3)
    cert, key = scep_identity(enroll_client, make_token(tree.ambulance).secret)
    late = SimulatedIPad(cert, key, udid=ipad.udid, serial=ipad.serial, topic=push_topic)
    assert late.checkin(enroll_client, late.authenticate_body()).status_code == 403


def test_cli_allows_reenrollment(
    monkeypatch: Any,
    enroll_settings: Any,
    enroll_client: Any,
    session: Session,
    tree: Any,
    push_topic: str,
    make_token: Any,
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    device = device_of(session, ipad.udid)
    for key, value in {
        "HIKESHI_INSTANCE_PATH": str(enroll_settings.instance_path),
        "HIKESHI_SECRET_KEY": enroll_settings.secret_key,
        "HIKESHI_DATABASE_URL": enroll_settings.database_url,
        "HIKESHI_PUSH_ENABLED": "0",
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    assert runner.invoke(main, ["devices", "allow-reenroll", str(device.id), "--hours", "0"]).exit_code != 0
    assert runner.invoke(main, ["devices", "allow-reenroll", "999999", "--hours", "2"]).exit_code != 0
    done = runner.invoke(main, ["devices", "allow-reenroll", str(device.id), "--hours", "2"])
    assert done.exit_code == 0, done.output
    assert "re-enrollment allowed until" in done.output
    [event] = events(session, "device.reenroll_allowed")
    assert event.actor.startswith("cli:")
    back = _comes_back(enroll_client, ipad, make_token(tree.ambulance).secret, push_topic)
    assert device_of(session, back.udid).reenroll_allowed_until is None


def test_renewal_30_days_before_expiry_then_a_wipe_is_certified(
    frozen_clock: Any,
    enroll_client: Any,
    session: Session,
    tree: Any,
    push_topic: str,
    make_token: Any,
    enroll_settings: Any,
) -> None:
    from enrollment.renewal import queue_identity_renewals
    from mdm.ground.models.incident import WipeCertificate
    from tests.enrollment.test_identity_renewal import _renewal_payloads

    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    frozen_clock.advance(days=340)  # 25 days left: inside the 30-day renewal window
    [command] = queue_identity_renewals(session, enroll_settings, ADMIN)
    session.commit()
    _, payloads = _renewal_payloads(command, ipad.identity_key)
    scep = next(p for p in payloads if p["PayloadType"] == "com.apple.security.scep")["PayloadContent"]
    while True:  # the device works through its queue (first inventory, then the renewal)
        answer = ipad.connect(enroll_client, ipad.idle_body())
        assert answer.status_code == 200 and answer.data
        if command.uuid.encode() in answer.data:
            break
        ipad.connect(enroll_client, ipad.result_body(plistlib.loads(answer.data)["CommandUUID"]))
    renewal = ScepClient(enroll_client).enroll(scep["Challenge"], cipher="aes256_cbc")
    assert renewal.reply.status == "0"
    renewed = SimulatedIPad(renewal.reply.certificate, renewal.key, udid=ipad.udid, topic=push_topic)
    assert renewed.connect(enroll_client, renewed.result_body(command.uuid)).status_code == 200

    device = device_of(session, ipad.udid)
    incident = hotline.open_incident(session, device, REPORT, actor=OPERATOR)
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR), reason="紛失")
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    session.commit()
    assert fingerprint(renewed.identity_cert) in incident.wipe_identities
    answer = renewed.connect(enroll_client, renewed.idle_body())
    assert erase.uuid.encode() in answer.data
    assert renewed.connect(enroll_client, renewed.result_body(erase.uuid)).status_code == 200
    fresh(session)
    [certificate] = session.scalars(select(WipeCertificate)).all()
    assert certificate.incident_id == incident.id and certificate.signature
