"""An oversized answer is never read whole or parsed, so nothing it claims (UDID, CommandUUID) is
trusted. Attacks: a device, or someone without a device identity, sends an oversized body that
names another tablet's command in flight, hoping to fail it (and so, say, make a lock or an
inventory refresh silently stop). Only the sender's own commands can ever be failed, and only
after its signature over the whole body verifies."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from sqlalchemy import func, select

from mdm.ground.models import Alert, AuditEvent, Command
from tests.protocol.test_oversized_answers import READ, SMALL, answer_body, enroll, fetch, queue
from tests.support.apple_device import SimulatedIPad
from tests.support.pki import issue_cert, make_ca


@pytest.fixture
def small_app(settings, device_ca):
    from mdm import create_app

    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        max_command_answer_bytes=SMALL,
        max_command_answer_read_bytes=READ,
    )
    application = create_app(conf)
    yield application
    application.extensions["hikeshi"].dispatcher.close()
    application.extensions["hikeshi"].engine.dispose()


@pytest.fixture
def victim(small_app, device_ca):
    """Tablet A with an inventory command delivered and not yet answered."""
    client = small_app.test_client()
    ipad, device_id = enroll(small_app, device_ca, "victim")
    uuid = queue(small_app, device_id)
    assert fetch(client, ipad)["CommandUUID"] == uuid
    return ipad, device_id, uuid


def _state(app, uuid: str) -> tuple[str, int, int]:
    with app.extensions["hikeshi"].session_factory() as s:
        status = s.scalars(select(Command.status).where(Command.uuid == uuid)).one()
        alerts = s.scalar(select(func.count()).select_from(Alert))
        failed = s.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "command.failed")
        )
        return status, alerts, failed


def test_another_enrolled_device_cannot_fail_the_victims_command(small_app, device_ca, victim):
    client = small_app.test_client()
    ipad_a, _a, uuid = victim
    attacker, attacker_id = enroll(small_app, device_ca, "attacker")
    own = queue(small_app, attacker_id)
    fetch(client, attacker)
    # The attacker's body names the victim's command and UDID, signed by the attacker's own key.
    body = answer_body(ipad_a, uuid, 600)
    assert len(body) > SMALL
    assert attacker.connect(client, body).status_code == 413
    with small_app.extensions["hikeshi"].session_factory() as s:
        assert s.scalars(select(Command.status).where(Command.uuid == uuid)).one() == "sent"
        # Its own command is not named in the body: nothing of its own fails either.
        assert s.scalars(select(Command.status).where(Command.uuid == own)).one() == "sent"
        [alert] = s.scalars(select(Alert)).all()
        assert alert.device_id == attacker_id and alert.details["command_uuid"] is None


def test_unsigned_or_forged_oversized_bodies_change_nothing(small_app, device_ca, victim):
    client = small_app.test_client()
    ipad_a, _a, uuid = victim
    body = answer_body(ipad_a, uuid, 600)
    before = _state(small_app, uuid)
    assert before == ("sent", 0, 0)

    # No signature at all.
    assert ipad_a.connect(client, body, signed=False).status_code == 413
    # The victim's genuine signature over a different (small) body, replayed on the big one.
    replayed = ipad_a.sign(ipad_a.idle_body())
    assert ipad_a.connect(client, body, signed=False, headers=replayed).status_code == 413
    # A key and certificate from a CA Hikeshi does not trust.
    rogue_ca, rogue_ca_key = make_ca("Rogue Device CA")
    rogue_cert, rogue_key = issue_cert(rogue_ca, rogue_ca_key, "victim")
    forged = pkcs7.PKCS7SignatureBuilder().set_data(body).add_signer(rogue_cert, rogue_key, hashes.SHA256())
    der = forged.sign(Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    headers = {"Mdm-Signature": base64.b64encode(der).decode()}
    assert ipad_a.connect(client, body, signed=False, headers=headers).status_code == 413
    assert _state(small_app, uuid) == before


def test_a_trusted_identity_never_bound_to_a_device_changes_nothing(small_app, device_ca, victim):
    client = small_app.test_client()
    ipad_a, _a, uuid = victim
    cert, key = device_ca.issue_identity("never-enrolled")
    stranger = SimulatedIPad(cert, key)
    body = answer_body(ipad_a, uuid, 600)
    assert stranger.connect(client, body).status_code == 413
    assert _state(small_app, uuid) == ("sent", 0, 0)


def test_a_body_past_the_read_limit_is_refused_unread_even_from_the_device_itself(small_app, victim):
    client = small_app.test_client()
    ipad_a, _a, uuid = victim
    body = answer_body(ipad_a, uuid, 6000)
    assert len(body) > READ
    assert ipad_a.connect(client, body).status_code == 413
    assert _state(small_app, uuid) == ("sent", 0, 0)
