"""The Apple MDM loop over HTTP, with plists shaped as real iPads send them, signed with a real
CMS signature: enroll, queue, fetch, acknowledge; and every way a request must be refused."""

from __future__ import annotations

import plistlib

from sqlalchemy import func, select

from commands.queue import cancel_command, enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.models import (
    AuditEvent,
    Command,
    CommandResult,
    CommandStatus,
    Device,
    DeviceMessage,
    EnrollmentState,
)
from mdm.ground.secretbox import unseal
from tests.support.apple_device import SimulatedIPad

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


def fresh(session) -> None:
    """End the test's read snapshot and forget loaded rows: see what the server committed."""
    session.rollback()
    session.expire_all()


def _enroll(client, ipad) -> None:
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200


def _skip_first_inventory(session) -> None:
    """Enrollment queues the first inventory (commands.inventory_refresh); these tests follow others."""
    fresh(session)
    for command in session.scalars(select(Command).where(Command.status == CommandStatus.QUEUED)):
        cancel_command(session, command, actor=ADMIN)
    session.commit()


def _counts(session) -> tuple[int, ...]:
    fresh(session)
    return tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (Device, DeviceMessage, Command, CommandResult, AuditEvent)
    )


def test_enroll_queue_fetch_acknowledge(client, ipad, session, app):
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    device = session.scalars(select(Device)).one()
    assert device.enrollment_state == EnrollmentState.PENDING
    assert (device.serial_number, device.os_version, device.product_name) == (
        ipad.serial,
        ipad.os_version,
        ipad.product_name,
    )
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    _skip_first_inventory(session)
    assert device.enrollment_state == EnrollmentState.ENROLLED
    assert device.push_token == ipad.token_hex and device.push_magic == ipad.push_magic
    secret = app.extensions["hikeshi"].settings.secret_key
    assert unseal(secret, "unlock-token", device.unlock_token_encrypted) == ipad.unlock_token
    # Raw messages are kept as the device sent them, but for secrets (the UnlockToken).
    kinds = session.scalars(select(DeviceMessage.message_type).order_by(DeviceMessage.id)).all()
    raws = session.scalars(select(DeviceMessage.raw).order_by(DeviceMessage.id)).all()
    assert kinds == ["Authenticate", "TokenUpdate"]
    assert plistlib.loads(raws[1])["Token"] == ipad.token and raws[0].startswith(b"<?xml")
    assert plistlib.loads(raws[1])["UnlockToken"] == "[redacted]"

    lock = enqueue_command(
        session, device, "DeviceLock", {"Message": "このiPadは消防本部の管理端末です"}, actor=ADMIN
    )
    session.commit()
    response = ipad.connect(client, ipad.idle_body())
    assert response.status_code == 200
    command = plistlib.loads(response.data)
    assert command["CommandUUID"] == lock.uuid
    assert command["Command"] == {"RequestType": "DeviceLock", "Message": "このiPadは消防本部の管理端末です"}

    result = ipad.result_body(lock.uuid, "Acknowledged")
    response = ipad.connect(client, result)
    assert response.status_code == 200 and response.data == b""
    fresh(session)
    assert lock.status == CommandStatus.ACKNOWLEDGED and lock.acknowledged_at is not None
    assert session.scalars(select(CommandResult.raw)).one() == result


def test_not_now_moves_on_and_idle_offers_it_again(client, ipad, session):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    device = session.scalars(select(Device)).one()
    first = enqueue_command(session, device, "ProfileList", {}, actor=ADMIN, priority=0)
    second = enqueue_command(session, device, "SecurityInfo", {}, actor=ADMIN, priority=0)
    session.commit()
    got = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert got["CommandUUID"] == first.uuid
    got = plistlib.loads(ipad.connect(client, ipad.result_body(first.uuid, "NotNow")).data)
    assert got["CommandUUID"] == second.uuid
    assert ipad.connect(client, ipad.result_body(second.uuid, "Acknowledged")).data == b""
    got = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert got["CommandUUID"] == first.uuid


def test_error_result_is_stored_with_its_chain(client, ipad, session):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    device = session.scalars(select(Device)).one()
    cmd = enqueue_command(session, device, "ProfileList", {}, actor=ADMIN)
    session.commit()
    ipad.connect(client, ipad.idle_body())
    ipad.connect(client, ipad.result_body(cmd.uuid, "Error"))
    fresh(session)
    assert cmd.status == CommandStatus.ERROR and cmd.error_chain[0]["ErrorCode"] == 12021


def test_checkout_unenrolls_and_keeps_history(client, ipad, session):
    _enroll(client, ipad)
    assert ipad.checkin(client, ipad.checkout_body()).status_code == 200
    fresh(session)
    device = session.scalars(select(Device)).one()
    assert device.enrollment_state == EnrollmentState.UNENROLLED and device.push_token is None
    assert session.scalar(select(func.count(DeviceMessage.id))) == 3


def test_user_authenticate_is_declined_with_410(client, ipad):
    _enroll(client, ipad)
    body = plistlib.dumps({"MessageType": "UserAuthenticate", "UDID": ipad.udid, "UserID": "u"})
    assert ipad.checkin(client, body).status_code == 410


def test_unknown_message_type_is_a_400(client, ipad, session):
    _enroll(client, ipad)
    before = _counts(session)
    response = ipad.checkin(client, plistlib.dumps({"MessageType": "Bogus", "UDID": ipad.udid}))
    assert response.status_code == 400 and b"Bogus" in response.data
    assert _counts(session) == before


def test_token_update_without_token_names_the_field(client, ipad, session):
    ipad.checkin(client, ipad.authenticate_body())
    before = _counts(session)
    body = plistlib.dumps(
        {"MessageType": "TokenUpdate", "UDID": ipad.udid, "Topic": ipad.topic, "PushMagic": "x"}
    )
    response = ipad.checkin(client, body)
    assert response.status_code == 400 and b"Token" in response.data
    assert _counts(session) == before


# --- refusals: nothing is written ------------------------------------------------------------


def _put(client, path: str, body: bytes, headers: dict[str, str]):
    return client.put(path, data=body, headers=headers)


def test_forged_signature_is_refused(client, ipad, session):
    _enroll(client, ipad)
    before = _counts(session)
    body = ipad.idle_body()
    headers = ipad.sign(body)
    tampered = body.replace(b"Idle", b"Idle ")
    assert _put(client, "/mdm/connect", tampered, headers).status_code == 401
    assert _put(client, "/mdm/connect", body, {}).status_code == 401
    assert _counts(session) == before


def test_identity_from_an_untrusted_ca_is_refused(client, session):
    from tests.support.pki import issue_cert, make_ca

    rogue_ca, rogue_key = make_ca("Rogue CA")
    cert, key = issue_cert(rogue_ca, rogue_key, "rogue-ipad")
    rogue = SimulatedIPad(cert, key)
    before = _counts(session)
    assert rogue.checkin(client, rogue.authenticate_body()).status_code == 401
    assert _counts(session) == before


def test_a_device_cannot_act_as_another(client, ipad, device_ca, session):
    _enroll(client, ipad)
    device = session.scalars(select(Device)).one()
    enqueue_command(session, device, "DeviceLock", {}, actor=ADMIN)
    session.commit()
    cert, key = device_ca.issue_identity("ipad-2")
    other = SimulatedIPad(cert, key)
    _enroll(client, other)
    before = _counts(session)
    # The second iPad's own certificate, the first iPad's UDID: connect, check-in, re-Authenticate.
    impostor = SimulatedIPad(cert, key, udid=ipad.udid, serial=ipad.serial)
    assert impostor.connect(client, impostor.idle_body()).status_code == 401
    assert impostor.checkin(client, impostor.token_update_body()).status_code == 401
    assert impostor.checkin(client, impostor.checkout_body()).status_code == 401
    assert _counts(session) == before
    # Re-Authenticate is an identity conflict: 403, and only its audit event is written.
    assert impostor.checkin(client, impostor.authenticate_body()).status_code == 403
    after = _counts(session)
    assert after[:4] == before[:4] and after[4] == before[4] + 1
    assert session.scalars(select(AuditEvent.action).order_by(AuditEvent.id.desc())).first() == (
        "device.identity_conflict"
    )
    fresh(session)
    assert device.push_token == ipad.token_hex


def test_unknown_device_cannot_connect_before_authenticate(client, ipad, session):
    before = _counts(session)
    assert before[:4] == (0, 0, 0, 0)
    assert ipad.connect(client, ipad.idle_body()).status_code == 401
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 401
    assert _counts(session) == before


def test_truncated_plist_is_refused(client, ipad, session):
    _enroll(client, ipad)
    before = _counts(session)
    body = ipad.idle_body()[:-20]
    assert _put(client, "/mdm/connect", body, ipad.sign(body)).status_code == 400
    assert _counts(session) == before


def test_two_mib_check_in_is_refused_with_413(client, ipad, session):
    # Check-in messages are small: HIKESHI_MAX_DEVICE_BODY (1 MiB). Command answers have their
    # own, larger limit (tests/protocol/test_oversized_answers.py).
    _enroll(client, ipad)
    before = _counts(session)
    body = plistlib.dumps(
        {"MessageType": "TokenUpdate", "UDID": ipad.udid, "Padding": "x" * (2 * 1024 * 1024)}
    )
    assert _put(client, "/mdm/checkin", body, ipad.sign(body)).status_code == 413
    assert _counts(session) == before


def test_entity_expansion_plist_is_refused(client, ipad, session):
    _enroll(client, ipad)
    before = _counts(session)
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'
        b'<plist version="1.0"><dict><key>Status</key><string>&lol2;</string>'
        b"<key>UDID</key><string>" + ipad.udid.encode() + b"</string></dict></plist>"
    )
    assert _put(client, "/mdm/connect", body, ipad.sign(body)).status_code == 400
    assert _counts(session) == before
