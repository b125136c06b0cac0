"""Issue 15, "Done when": a full run through the real app, then a scan of the whole database
(every column of every table), every file of the instance folder (and the SQLite file with its
side files) and the logs, for every secret the run used, in clear, hex and base64: none found.

The run: an enrollment token → the enrollment profile → SCEP with its challenge → Authenticate
and TokenUpdate with an UnlockToken → the first inventory answered → a profile with a Wi-Fi PSK
and an EAP-TLS network whose identity challenge is made for the device at delivery → an
administrator and an approver signed in with password and TOTP → an incident, lock, passcode
cleared with the UnlockToken, a two-person wipe, EraseDevice acknowledged, the wipe certificate."""

from __future__ import annotations

import io
import logging
import plistlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import select
from sqlalchemy.engine import make_url

import commands.incidents as hotline
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.logsetup import make_handler
from mdm.ground.models import Device, Incident
from profiles.device_identity import unsigned_content
from tests.enrollment.conftest import (  # noqa: F401  (fixtures)
    enroll_app,
    enroll_client,
    enroll_settings,
    make_token,
    provisioned_ca,
    push_topic,
    tree,
)
from tests.enrollment.helpers import challenge_of, profile_dict
from tests.profiles.samples import station_wifi
from tests.profiles.test_assignment_e2e import ManagedIPad
from tests.security.scan import file_bytes, find_in, scan_database, scan_folder, scan_text
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient
from tests.web import helpers as web

PSK = "Kasai-Station-PSK-2026"
ADMIN_PASSWORD = "correct horse battery staple 火消し"
APPROVER_PASSWORD = "duty officer 当直 2026 approves"
REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "callback_number": "090-1234-5678"}


def _payloads(signed: bytes, payload_type: str) -> list[dict[str, Any]]:
    document = plistlib.loads(unsigned_content(signed))
    return [p for p in document["PayloadContent"] if p["PayloadType"] == payload_type]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Any:
    """The logs as production writes them (our handler, our filter) and as the app emits them."""
    stream = io.StringIO()
    handler = make_handler()
    handler.setStream(stream)  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    yield lambda: (stream.getvalue(), caplog.text)
    root.removeHandler(handler)


def test_no_secret_of_a_full_run_is_found_at_rest_or_in_the_logs(
    enroll_app: Any,  # noqa: F811
    enroll_client: Any,  # noqa: F811
    enroll_settings: Any,  # noqa: F811
    provisioned_ca: Any,  # noqa: F811
    push_topic: str,  # noqa: F811
    tree: Any,  # noqa: F811
    make_token: Any,  # noqa: F811
    logs: Any,
) -> None:
    app, client = enroll_app, enroll_client
    factory = app.extensions["hikeshi"].session_factory
    used: dict[str, str | bytes] = {}

    # Enrollment: token → profile → SCEP with the challenge → Authenticate, TokenUpdate.
    token = make_token(tree.ambulance, uses=1)
    used["enrollment token"] = token.secret
    response = client.get(f"/enroll/{token.secret}")
    assert response.status_code == 200
    used["enrollment SCEP challenge"] = challenge_of(profile_dict(response.data))
    enrollment = ScepClient(client).enroll(used["enrollment SCEP challenge"])
    assert enrollment.reply.status == "0", enrollment.reply.fail_info
    ipad = SimulatedIPad(enrollment.reply.certificate, enrollment.key, topic=push_topic)
    used["UnlockToken"] = ipad.unlock_token
    used["device identity key"] = enrollment.key.private_bytes(
        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
    )
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    managed = ManagedIPad(ipad)
    assert "DeviceInformation" in managed.drain(client)  # the first inventory, answered

    # People: an administrator and an approver with passwords and TOTP, API tokens for the doors.
    with factory() as s:
        admin = web.make_user(s, enroll_settings, "admin-kato", "admin", password=ADMIN_PASSWORD)
        approver = web.make_user(s, enroll_settings, "duty-sato", "approver", password=APPROVER_PASSWORD)
        tokens = {role: web.make_token(s, role) for role in ("admin", "operator", "approver")}
    used.update({"admin password": ADMIN_PASSWORD, "approver password": APPROVER_PASSWORD})
    used.update({"admin TOTP seed": admin.seed or "", "approver TOTP seed": approver.seed or ""})
    used.update({f"{role} API token": value for role, value in tokens.items()})
    headers = {role: web.bearer(value) for role, value in tokens.items()}
    for account in (admin, approver):
        web.login(app.test_client(), account)
    used["CA private key"] = provisioned_ca.private_key.private_bytes(
        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
    )

    # A profile with a Wi-Fi PSK and an EAP-TLS network, assigned to the tablet's unit.
    spec = {
        "identifier": "jp.example.fd.station-networks",
        "name_ja": "署内ネットワーク",
        "name_en": "Station networks",
        "payloads": [
            {
                "kind": "wifi",
                "key": "guest",
                "settings": {"ssid": "FD-GUEST", "security": "wpa2_personal", "password": PSK},
            },
            {"kind": "wifi", "key": "station", "settings": station_wifi()},
        ],
    }
    used["Wi-Fi PSK"] = PSK
    created = client.post("/api/v1/profiles", headers=headers["admin"], json=spec)
    assert created.status_code == 201, created.get_json()
    profile_id = created.get_json()["id"]
    assigned = client.post(
        f"/api/v1/profiles/{profile_id}/assignments",
        headers=headers["admin"],
        json={"org_unit_id": tree.ambulance.id},
    )
    assert assigned.status_code == 201, assigned.get_json()
    assert "InstallProfile" in managed.drain(client)
    delivered = managed.signed_payloads[-1]
    [guest] = [p for p in _payloads(delivered, "com.apple.wifi.managed") if p["SSID_STR"] == "FD-GUEST"]
    assert guest["Password"] == PSK
    [scep] = _payloads(delivered, "com.apple.security.scep")
    used["Wi-Fi identity SCEP challenge"] = scep["PayloadContent"]["Challenge"]

    # The hotline: incident, lock, passcode cleared with the UnlockToken, two-person wipe.
    with factory() as s:
        device_id = s.scalars(select(Device.id).where(Device.udid == ipad.udid)).one()
    opened = client.post(
        "/api/v1/incidents", headers=headers["operator"], json={"device_id": device_id, **REPORT}
    )
    assert opened.status_code == 201, opened.get_json()
    url = f"/api/v1/incidents/{opened.get_json()['id']}"
    assert client.post(url + "/lock", headers=headers["operator"], json={}).status_code == 200
    managed.drain(client)
    with transaction(factory) as s:
        incident = s.get(Incident, opened.get_json()["id"])
        hotline.clear_passcode(s, incident, actor=Actor("operator-tanaka", "operator"))
    assert "ClearPasscode" in managed.drain(client)
    [clear] = [command for kind, command in managed.received if kind == "ClearPasscode"]
    assert clear["UnlockToken"] == ipad.unlock_token  # it reached the device, and only the device
    assert (
        client.post(url + "/wipe-request", headers=headers["operator"], json={"reason": "盗難"}).status_code
        == 200
    )
    assert client.post(url + "/wipe-approval", headers=headers["approver"]).status_code == 200
    assert "EraseDevice" in managed.drain(client)
    detail = client.get(url, headers=headers["operator"]).get_json()
    assert detail["status"] == "wiped" and detail["certificate"]["signed"] is True
    assert client.get(url + "/certificate", headers=headers["approver"]).status_code == 200
    assert client.get(f"/api/v1/devices/{device_id}/commands", headers=headers["operator"]).status_code == 200

    # The scan. Controls first: values that are meant to be stored as they are (the push token,
    # the instance secret file) are found, so a clean scan is not a scan that cannot find.
    engine = app.extensions["hikeshi"].engine
    controls = {"push token (stored as is)": ipad.token}
    assert scan_database(engine, controls)[0]
    findings, values = scan_database(engine, used)
    assert values > 1000
    instance = Path(enroll_settings.instance_path)
    if (instance / "secret_key").exists():
        assert scan_folder(instance, {"instance secret": (instance / "secret_key").read_bytes().strip()})[0]
    folder_hits, _files = scan_folder(instance, used)
    findings += folder_hits
    database_url = make_url(enroll_settings.database_url)
    if database_url.get_backend_name() == "sqlite":
        database = Path(database_url.database or "")
        files = [p for p in (database, *(Path(f"{database}{s}") for s in ("-wal", "-shm"))) if p.exists()]
        assert any(find_in(file_bytes(p), controls, str(p)) for p in files)
        for path in files:
            findings += find_in(file_bytes(path), used, str(path))
    written, emitted = logs()
    assert written.strip() and emitted.strip()
    findings += scan_text([written], used, "log output")
    findings += scan_text([emitted], used, "log records")
    assert findings == []
