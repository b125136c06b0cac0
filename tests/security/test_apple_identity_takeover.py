"""Issue 13, attacks 1 and 2: taking over an enrolled iPad's identity with what a leaked QR code
(any unit's), a Wi-Fi profile or one enrolled tablet gives. Every attack runs over HTTP with real
SCEP and real Mdm-Signature; each asserts the refusal and that no guarded row changed."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.queue import enqueue_command
from mdm.ground import ca as ca_service
from mdm.ground.models import Command, CommandStatus, EnrollmentState
from mdm.ground.x509util import fingerprint
from profiles.device_identity import issue_wifi_challenge
from tests.enrollment.conftest import ADMIN
from tests.security.identity_support import (
    alerts,
    device_of,
    enrolled_ipad,
    events,
    scep_identity,
    snapshot,
)
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import RENEWAL_REQ, ScepClient

CONFLICT = "device.identity_conflict"


def _victim(client: Any, session: Session, tree: Any, topic: str, make_token: Any) -> SimulatedIPad:
    """An ambulance iPad, enrolled, with a lock waiting in its queue."""
    victim = enrolled_ipad(client, make_token(tree.ambulance).secret, topic)
    device = device_of(session, victim.udid)
    enqueue_command(session, device, "DeviceLock", {"Message": "消防本部の管理端末です"}, actor=ADMIN)
    session.commit()
    return victim


def _impostor(cert: Any, key: Any, victim: SimulatedIPad, topic: str) -> SimulatedIPad:
    return SimulatedIPad(cert, key, udid=victim.udid, serial=victim.serial, topic=topic)


def _assert_untouched(session: Session, before: dict[str, Any], victim: SimulatedIPad, unit_id: int) -> None:
    assert snapshot(session) == before
    device = device_of(session, victim.udid)
    assert device.org_unit_id == unit_id
    assert (device.push_token, device.push_magic) == (victim.token_hex, victim.push_magic)


def _assert_conflict_recorded(session: Session, victim: SimulatedIPad, presented: Any) -> None:
    device = device_of(session, victim.udid)
    [alert] = alerts(session, CONFLICT)
    assert alert.device_id == device.id and alert.severity == "critical"
    assert alert.title.startswith("端末識別情報の衝突") and "Identity conflict" in alert.title
    assert alert.details["presented_certificate"] == fingerprint(presented)
    assert alert.details["bound_certificates"] == [fingerprint(victim.identity_cert)]
    [event] = events(session, CONFLICT)
    assert event.target_id == str(device.id)
    assert event.details["presented_certificate"] == fingerprint(presented)
    assert event.details["bound_certificates"] == [fingerprint(victim.identity_cert)]


def _attack_all_doors(client: Any, impostor: SimulatedIPad) -> tuple[int, ...]:
    authenticate = impostor.checkin(client, impostor.authenticate_body()).status_code
    return (authenticate, *_other_doors(client, impostor))


def _other_doors(client: Any, impostor: SimulatedIPad) -> tuple[int, ...]:
    """TokenUpdate, Idle, CheckOut: what an impostor tries after (or instead of) Authenticate."""
    return (
        impostor.checkin(client, impostor.token_update_body()).status_code,
        impostor.connect(client, impostor.idle_body()).status_code,
        impostor.checkin(client, impostor.checkout_body()).status_code,
    )


def test_another_units_token_cannot_take_over_an_enrolled_ipad(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    cert, key = scep_identity(enroll_client, make_token(tree.pump).secret)
    impostor = _impostor(cert, key, victim, push_topic)
    before = snapshot(session)

    response = impostor.checkin(enroll_client, impostor.authenticate_body())
    assert response.status_code == 403
    assert b"identity conflict" in response.data
    assert _other_doors(enroll_client, impostor) == (401, 401, 401)

    _assert_untouched(session, before, victim, tree.ambulance.id)
    _assert_conflict_recorded(session, victim, cert)
    # The real tablet still gets its lock.
    answer = victim.connect(enroll_client, victim.idle_body())
    assert answer.status_code == 200 and b"DeviceLock" in answer.data


def test_a_leaked_qr_code_of_the_same_unit_cannot_take_over_either(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    cert, key = scep_identity(enroll_client, make_token(tree.ambulance, uses=5).secret)
    impostor = _impostor(cert, key, victim, push_topic)
    before = snapshot(session)
    assert _attack_all_doors(enroll_client, impostor) == (403, 401, 401, 401)
    _assert_untouched(session, before, victim, tree.ambulance.id)
    _assert_conflict_recorded(session, victim, cert)


def test_a_pending_ipad_is_protected_too(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    cert, key = scep_identity(enroll_client, make_token(tree.ambulance).secret)
    victim = SimulatedIPad(cert, key, topic=push_topic)
    assert victim.checkin(enroll_client, victim.authenticate_body()).status_code == 200
    assert device_of(session, victim.udid).enrollment_state == EnrollmentState.PENDING
    other_cert, other_key = scep_identity(enroll_client, make_token(tree.pump).secret)
    impostor = _impostor(other_cert, other_key, victim, push_topic)
    before = snapshot(session)
    assert impostor.checkin(enroll_client, impostor.authenticate_body()).status_code == 403
    assert impostor.checkin(enroll_client, impostor.token_update_body()).status_code == 401
    assert snapshot(session) == before
    assert device_of(session, victim.udid).org_unit_id == tree.ambulance.id
    assert len(alerts(session, CONFLICT)) == 1


def test_a_wifi_certificate_never_opens_the_mdm_channel(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    # The per-device EAP-TLS challenge a Wi-Fi profile carries, redeemed over SCEP.
    challenge = issue_wifi_challenge(session, device_of(session, victim.udid))
    session.commit()
    wifi = ScepClient(enroll_client).enroll(challenge)
    assert wifi.reply.status == "0"
    impostor = _impostor(wifi.reply.certificate, wifi.key, victim, push_topic)
    before = snapshot(session)

    response = impostor.checkin(enroll_client, impostor.authenticate_body())
    assert response.status_code == 403 and b"wifi certificate is not an MDM identity" in response.data
    assert _other_doors(enroll_client, impostor) == (401, 401, 401)
    # Nor for a UDID never seen: no device is created from a Wi-Fi certificate.
    stranger = SimulatedIPad(wifi.reply.certificate, wifi.key, topic=push_topic)
    assert stranger.checkin(enroll_client, stranger.authenticate_body()).status_code == 403

    _assert_untouched(session, before, victim, tree.ambulance.id)
    _assert_conflict_recorded(session, victim, wifi.reply.certificate)
    assert alerts(session, CONFLICT)[0].details["presented_purpose"] == "wifi"


def test_an_expired_identity_is_refused(
    frozen_clock: Any, enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    cert, key = scep_identity(enroll_client, make_token(tree.pump).secret)
    frozen_clock.advance(days=400)  # past the 365-day identity lifetime
    impostor = _impostor(cert, key, victim, push_topic)
    before = snapshot(session)
    assert _attack_all_doors(enroll_client, impostor) == (401, 401, 401, 401)
    # The expired identity cannot speak for a new UDID either.
    stranger = SimulatedIPad(cert, key, topic=push_topic)
    assert stranger.checkin(enroll_client, stranger.authenticate_body()).status_code == 401
    assert snapshot(session) == before
    assert alerts(session, CONFLICT) == []


def test_a_renewal_certificate_of_device_a_cannot_speak_for_device_b(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    attacker = enrolled_ipad(enroll_client, make_token(tree.pump).secret, push_topic)
    # The attacker's tablet renews its own identity (RenewalReq signed with its current one).
    renewal = ScepClient(enroll_client).enroll(
        None, message_type=RENEWAL_REQ, signer=(attacker.identity_cert, attacker.identity_key)
    )
    assert renewal.reply.status == "0"
    renewed = renewal.reply.certificate
    impostor = _impostor(renewed, renewal.key, victim, push_topic)
    before = snapshot(session)
    assert _attack_all_doors(enroll_client, impostor) == (403, 401, 401, 401)
    _assert_untouched(session, before, victim, tree.ambulance.id)
    _assert_conflict_recorded(session, victim, renewed)
    assert alerts(session, CONFLICT)[0].details["presented_bound_device_id"] == (
        device_of(session, attacker.udid).id
    )
    # The renewed identity still works for its own tablet.
    own = SimulatedIPad(renewed, renewal.key, udid=attacker.udid, topic=push_topic)
    assert own.connect(enroll_client, own.idle_body()).status_code == 200


def test_a_bound_identity_cannot_create_a_second_device(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    owner = enrolled_ipad(enroll_client, make_token(tree.pump).secret, push_topic)
    clone = SimulatedIPad(owner.identity_cert, owner.identity_key, topic=push_topic)
    before = snapshot(session)
    response = clone.checkin(enroll_client, clone.authenticate_body())
    assert response.status_code == 403 and b"bound to another device" in response.data
    assert snapshot(session) == before
    [alert] = alerts(session, CONFLICT)
    assert alert.device_id == device_of(session, owner.udid).id and alert.details["udid"] == clone.udid


def test_a_revoked_identity_is_refused(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    ipad = enrolled_ipad(enroll_client, make_token(tree.ambulance).secret, push_topic)
    old_cert, old_key = ipad.identity_cert, ipad.identity_key
    # Checked out and enrolled again: the first identity is revoked at the rebinding.
    assert ipad.checkin(enroll_client, ipad.checkout_body()).status_code == 200
    new_cert, new_key = scep_identity(enroll_client, make_token(tree.ambulance).secret)
    back = SimulatedIPad(new_cert, new_key, udid=ipad.udid, serial=ipad.serial, topic=push_topic)
    assert back.checkin(enroll_client, back.authenticate_body()).status_code == 200
    assert back.checkin(enroll_client, back.token_update_body()).status_code == 200

    old = SimulatedIPad(old_cert, old_key, udid=ipad.udid, serial=ipad.serial, topic=push_topic)
    before = snapshot(session)
    assert _attack_all_doors(enroll_client, old) == (401, 401, 401, 401)
    stranger = SimulatedIPad(old_cert, old_key, topic=push_topic)
    assert stranger.checkin(enroll_client, stranger.authenticate_body()).status_code == 401
    assert snapshot(session) == before


def test_a_certificate_of_the_builtin_ca_never_recorded_is_refused(
    enroll_client: Any,
    session: Session,
    tree: Any,
    push_topic: str,
    make_token: Any,
    provisioned_ca: ca_service.Credential,
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    # What a stolen CA key (or a database restored from before the issuance) would produce.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = ca_service.issue_device_identity(provisioned_ca, key.public_key(), "forged", days=365)
    before = snapshot(session)
    impostor = _impostor(forged, key, victim, push_topic)
    assert _attack_all_doors(enroll_client, impostor) == (401, 401, 401, 401)
    stranger = SimulatedIPad(forged, key, topic=push_topic)
    assert stranger.checkin(enroll_client, stranger.authenticate_body()).status_code == 401
    assert snapshot(session) == before


def test_a_retrying_attacker_raises_one_alert_and_an_audit_event_per_attempt(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    cert, key = scep_identity(enroll_client, make_token(tree.pump).secret)
    impostor = _impostor(cert, key, victim, push_topic)
    for _ in range(3):
        assert impostor.checkin(enroll_client, impostor.authenticate_body()).status_code == 403
    assert len(alerts(session, CONFLICT)) == 1
    assert len(events(session, CONFLICT)) == 3


def test_queued_commands_stay_with_the_real_tablet(
    enroll_client: Any, session: Session, tree: Any, push_topic: str, make_token: Any
) -> None:
    victim = _victim(enroll_client, session, tree, push_topic, make_token)
    cert, key = scep_identity(enroll_client, make_token(tree.pump).secret)
    impostor = _impostor(cert, key, victim, push_topic)
    assert impostor.checkin(enroll_client, impostor.authenticate_body()).status_code == 403
    assert impostor.connect(enroll_client, impostor.idle_body()).status_code == 401
    device = device_of(session, victim.udid)
    locks = session.scalars(
        select(Command).where(Command.device_id == device.id, Command.request_type == "DeviceLock")
    ).all()
    assert [(c.status, c.delivery_count) for c in locks] == [(CommandStatus.QUEUED, 0)]
