"""The whole hotline call end to end: the simulated iPad speaks the MDM protocol over HTTP (Flask
test client), pushes go to the real APNs test server, the services run in their own
transactions as the console would call them, and the certificate is checked by
`hikeshi certificate verify` and by `openssl cms -verify`."""

from __future__ import annotations

import plistlib
import subprocess
from dataclasses import replace

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

import commands.incidents as hotline
from commands.queue import enqueue_command
from mdm import create_app
from mdm.ground.audit import Actor
from mdm.ground.ca import builtin_device_cas
from mdm.ground.db import transaction
from mdm.ground.models import (
    AuditEvent,
    Command,
    Device,
    EnrollmentState,
    Incident,
    IncidentStatus,
    WipeCertificate,
)
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from mdm.roots.cli import main as hikeshi
from tests.support.apple_device import SimulatedIPad
from tests.support.people import person
from tests.support.tools import require_tool

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("duty-officer-sato", "approver", "192.0.2.11")
ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "callback_number": "090-1234-5678"}


@pytest.fixture
def push_topic(apns_server):
    return apns_server.issue_client_credentials()


@pytest.fixture
def conf(settings, device_ca, apns_server):
    return replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )


@pytest.fixture
def pushing_app(conf, push_topic):
    application = create_app(conf)
    with transaction(application.extensions["hikeshi"].session_factory) as s:
        loaded = read_push_certificate(push_topic.cert_pem + push_topic.key_pem)
        import_push_certificate(s, loaded, secret_key=conf.secret_key, actor=ADMIN)
    yield application
    application.extensions["hikeshi"].dispatcher.close()
    application.extensions["hikeshi"].engine.dispose()


def _factory(app):
    return app.extensions["hikeshi"].session_factory


def _enrolled(app, device_ca, topic: str, name: str, *, supervised: bool) -> SimulatedIPad:
    cert, key = device_ca.issue_identity(name)
    ipad = SimulatedIPad(cert, key, topic=topic, supervised=supervised)
    client = app.test_client()
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    with transaction(_factory(app)) as s:
        # Set by the inventory service from DeviceInformation in production.
        s.scalars(select(Device).where(Device.udid == ipad.udid)).one().is_supervised = supervised
    return ipad


def _fetch(app, ipad, body: bytes) -> dict | None:
    data = ipad.connect(app.test_client(), body).data
    return plistlib.loads(data) if data else None


def _open_and_lock(app, ipad) -> tuple[int, str, bool]:
    with transaction(_factory(app)) as s:
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        for n in range(10):
            params = {"Identifier": f"jp.example.fire.p{n}"}
            enqueue_command(s, device, "RemoveProfile", params, actor=ADMIN, push=False)
        incident = hotline.open_incident(s, device, REPORT, actor=OPERATOR)
        outcome = hotline.lock_now(s, incident, actor=OPERATOR)
        return incident.id, outcome.command.uuid, outcome.lost_mode


def _incident(app, incident_id: int, fn, *args, **kwargs):
    with transaction(_factory(app)) as s:
        if "actor" in kwargs:
            kwargs["actor"] = person(s, kwargs["actor"])
        return fn(s, s.get(Incident, incident_id), *args, **kwargs)


@pytest.mark.parametrize(("supervised", "lock_type"), [(True, "EnableLostMode"), (False, "DeviceLock")])
def test_the_whole_call(
    pushing_app,
    conf,
    device_ca,
    apns_server,
    push_topic,
    session,
    tmp_path,
    monkeypatch,
    supervised,
    lock_type,
):
    ipad = _enrolled(pushing_app, device_ca, push_topic.topic, "ipad-lost", supervised=supervised)
    incident_id, lock_uuid, lost_mode = _open_and_lock(pushing_app, ipad)
    assert lost_mode is supervised

    # Lock now: pushed at once, fetched first although ten other commands were queued before it.
    [push] = apns_server.wait_for_pushes(1, timeout=10)
    assert push.token == ipad.token_hex
    # Let the dispatcher record the push first: on PostgreSQL its UPDATE of pushed_at holds the
    # command rows, and next_command's SKIP LOCKED would hand the device nothing meanwhile.
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)
    first = _fetch(pushing_app, ipad, ipad.idle_body())
    assert first["CommandUUID"] == lock_uuid and first["Command"]["RequestType"] == lock_type
    if supervised:
        assert first["Command"]["Message"] and first["Command"]["Footnote"]
    _fetch(pushing_app, ipad, ipad.result_body(lock_uuid))
    with transaction(_factory(pushing_app)) as s:
        assert s.get(Incident, incident_id).status == IncidentStatus.LOCKED

    # Two people: the operator asks, cannot approve alone; a duty officer approves.
    _incident(pushing_app, incident_id, hotline.request_wipe, actor=OPERATOR, reason="盗難の疑い")
    with pytest.raises(hotline.SamePersonError):
        _incident(pushing_app, incident_id, hotline.approve_wipe, actor=OPERATOR)
    erase_uuid = _incident(pushing_app, incident_id, hotline.approve_wipe, actor=APPROVER).uuid
    apns_server.wait_for_pushes(2, timeout=10)
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)

    erase = _fetch(pushing_app, ipad, ipad.idle_body())
    assert erase["CommandUUID"] == erase_uuid and erase["Command"]["RequestType"] == "EraseDevice"
    _fetch(pushing_app, ipad, ipad.result_body(erase_uuid))

    with transaction(_factory(pushing_app)) as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == IncidentStatus.WIPED
        assert incident.device.enrollment_state == EnrollmentState.RETIRED
        timeline = hotline.incident_timeline(s, incident)
        erase_states = [e.action for e in timeline if e.details.get("command_uuid") == erase_uuid]
        assert {"queued", "pushed", "delivered", "acknowledged"} <= set(erase_states)
        ca_pem = b"".join(c.public_bytes(Encoding.PEM) for c in builtin_device_cas(s, conf))

    # The certificate: exported (signed) and verified by the CLI and by openssl.
    for key, value in {
        "HIKESHI_INSTANCE_PATH": str(conf.instance_path),
        "HIKESHI_SECRET_KEY": conf.secret_key,
        "HIKESHI_DATABASE_URL": conf.database_url,
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    out = tmp_path / "out"
    exported = runner.invoke(hikeshi, ["certificate", "export", str(incident_id), "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    content = out / f"wipe-certificate-{incident_id}.json"
    signature = out / f"wipe-certificate-{incident_id}.json.p7s"
    text = content.read_text(encoding="utf-8")
    for value in (ipad.serial, ipad.udid, ipad.model, erase_uuid, OPERATOR.name, APPROVER.name):
        assert value in text
    assert "消去完了証明書" in (out / f"wipe-certificate-{incident_id}.html").read_text(encoding="utf-8")
    row = session.scalars(select(WipeCertificate)).one()
    assert row.content == content.read_bytes() and row.signature == signature.read_bytes()

    verified = runner.invoke(hikeshi, ["certificate", "verify", str(content), str(signature)])
    assert verified.exit_code == 0 and verified.output.startswith("OK"), verified.output
    openssl = require_tool("openssl")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_pem)
    args = [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signature)]
    args += ["-content", str(content), "-CAfile", str(ca_file), "-out", "/dev/null"]
    assert subprocess.run(args, capture_output=True).returncode == 0

    raw = content.read_bytes()
    content.write_bytes(raw[:40] + bytes([raw[40] ^ 0x01]) + raw[41:])
    refused = runner.invoke(hikeshi, ["certificate", "verify", str(content), str(signature)])
    assert refused.exit_code != 0 and "FAILED" in refused.output
    assert subprocess.run(args, capture_output=True).returncode != 0


def test_a_device_that_never_answers_is_not_called_wiped(pushing_app, device_ca, apns_server, push_topic):
    ipad = _enrolled(pushing_app, device_ca, push_topic.topic, "ipad-gone", supervised=True)
    incident_id, _, _ = _open_and_lock(pushing_app, ipad)
    apns_server.wait_for_pushes(1, timeout=10)
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)
    apns_server.set_outage(503, count=2)
    _incident(pushing_app, incident_id, hotline.request_wipe, actor=OPERATOR)
    _incident(pushing_app, incident_id, hotline.approve_wipe, actor=APPROVER)
    apns_server.wait_for_pushes(4, timeout=20)
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(20)

    with transaction(_factory(pushing_app)) as s:
        incident = s.get(Incident, incident_id)
        assert incident.status == IncidentStatus.WIPE_APPROVED
        assert hotline.wipe_progress(incident) == hotline.WipeProgress.NOT_DELIVERED
        assert incident.device.enrollment_state == EnrollmentState.ENROLLED
        pushes = [e for e in hotline.incident_timeline(s, incident) if e.kind == "push"]
        assert [p.details["attempts"] for p in pushes] == [1, 3]
        assert s.scalars(select(WipeCertificate)).first() is None


def test_clear_passcode_carries_the_unlock_token_only_on_the_wire(
    pushing_app, device_ca, push_topic, session
):
    ipad = _enrolled(pushing_app, device_ca, push_topic.topic, "ipad-passcode", supervised=True)
    with transaction(_factory(pushing_app)) as s:
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        incident = hotline.open_incident(s, device, REPORT, actor=OPERATOR)
        uuid = hotline.clear_passcode(s, incident, actor=OPERATOR).uuid
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)
    fetched = _fetch(pushing_app, ipad, ipad.idle_body())
    assert fetched["CommandUUID"] == uuid
    assert fetched["Command"] == {"RequestType": "ClearPasscode", "UnlockToken": ipad.unlock_token}
    stored = session.scalars(select(Command).where(Command.uuid == uuid)).one()
    assert stored.params == {}
    logged = " ".join(str(e.details) for e in session.scalars(select(AuditEvent)))
    assert ipad.unlock_token.hex() not in logged and "UnlockToken" not in logged
