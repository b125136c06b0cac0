"""The hotline over the REST API, with a simulated iPad on /mdm/connect and the real APNs test
server: open → lock now → two-person wipe (the requester cannot approve: 403 two_person_rule) →
EraseDevice acknowledged → certificate signed at once and downloadable; a device that never
answers stays "wipe approved, not delivered" with its push retries on the incident."""

from __future__ import annotations

import plistlib
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from commands.wipe_certificate import verify_detached
from mdm.ground.ca import builtin_device_cas
from mdm.ground.db import transaction
from mdm.ground.models import Command, Device, WipeCertificate
from tests.hotline.test_hotline_call import _enrolled, conf, push_topic, pushing_app  # noqa: F401
from tests.web.helpers import bearer, make_token

REPORT = {
    "caller_name": "山田 太郎",
    "caller_unit": "救急3隊",
    "callback_number": "090-1234-5678",
    "lost_at": "2026-11-23T02:40:00+09:00",
    "lost_place": "中央病院 救急搬入口",
    "kind": "stolen",
}


def _tokens(app: Any) -> dict[str, dict[str, str]]:
    with app.extensions["hikeshi"].session_factory() as s:
        return {role: bearer(make_token(s, role)) for role in ("operator", "approver", "admin", "dispatch")}


def _device_id(app: Any, udid: str) -> int:
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        return s.scalars(select(Device.id).where(Device.udid == udid)).one()


def _fetch(app: Any, ipad: Any, body: bytes) -> dict | None:
    data = ipad.connect(app.test_client(), body).data
    return plistlib.loads(data) if data else None


def _open_and_lock(app: Any, client: Any, tokens: dict, device_id: int, apns_server: Any) -> tuple[int, str]:
    opened = client.post(
        "/api/v1/incidents", headers=tokens["operator"], json={"device_id": device_id, **REPORT}
    )
    assert opened.status_code == 201, opened.get_json()
    incident = opened.get_json()
    assert incident["status"] == "open" and incident["operator"].endswith("operator test token")
    assert incident["caller_unit"] == "救急3隊" and incident["kind"] == "stolen"
    locked = client.post(f"/api/v1/incidents/{incident['id']}/lock", headers=tokens["operator"], json={})
    assert locked.status_code == 200, locked.get_json()
    body = locked.get_json()
    assert body["command"]["request_type"] == "EnableLostMode" and body["notice_ja"]
    apns_server.wait_for_pushes(1, timeout=10)
    assert app.extensions["hikeshi"].dispatcher.wait_idle(10)
    return incident["id"], body["command"]["uuid"]


def _fetch_params(app: Any, uuid: str) -> dict:
    with app.extensions["hikeshi"].session_factory() as s:
        return s.scalars(select(Command.params).where(Command.uuid == uuid)).one() or {}


def _command_state(detail: dict, uuid: str) -> str:
    return next(c["state"] for c in detail["commands"] if c["uuid"] == uuid)


def test_lock_and_two_person_wipe_over_the_api(pushing_app, conf, device_ca, apns_server, push_topic):  # noqa: F811
    app, client = pushing_app, pushing_app.test_client()
    tokens = _tokens(app)
    ipad = _enrolled(app, device_ca, push_topic.topic, "ipad-api", supervised=True)
    incident_id, lock_uuid = _open_and_lock(app, client, tokens, _device_id(app, ipad.udid), apns_server)
    url = f"/api/v1/incidents/{incident_id}"

    detail = client.get(url, headers=tokens["operator"]).get_json()
    assert _command_state(detail, lock_uuid) == "pushed"
    # Sent, not answered: the API claims nothing is on the tablet's screen yet.
    assert detail["finder"]["state"] == "not_acknowledged" and detail["finder"]["text"] is None
    assert detail["finder"]["waiting"]["command_uuid"] == lock_uuid
    assert _fetch(app, ipad, ipad.idle_body())["CommandUUID"] == lock_uuid
    assert _command_state(client.get(url, headers=tokens["operator"]).get_json(), lock_uuid) == "delivered"
    _fetch(app, ipad, ipad.result_body(lock_uuid))
    detail = client.get(url, headers=tokens["approver"]).get_json()
    assert detail["status"] == "locked" and _command_state(detail, lock_uuid) == "acknowledged"
    sent = _fetch_params(app, lock_uuid)
    assert detail["finder"]["text"]["command_uuid"] == lock_uuid
    assert detail["finder"]["text"]["message"] == sent.get("Message")
    assert detail["finder"]["text"]["phone_number"] == sent.get("PhoneNumber")
    lock_entries = [e["action"] for e in detail["timeline"] if e["details"].get("command_uuid") == lock_uuid]
    assert {"queued", "pushed", "delivered", "acknowledged", "lock_confirmed"} <= set(lock_entries)
    # Where is it? DeviceLocation's answer lands on the incident, with a plain map link.
    located = client.post(url + "/location-request", headers=tokens["operator"])
    assert located.status_code == 200 and located.get_json()["command"]["request_type"] == "DeviceLocation"
    location_uuid = located.get_json()["command"]["uuid"]
    assert app.extensions["hikeshi"].dispatcher.wait_idle(10)
    assert _fetch(app, ipad, ipad.idle_body())["CommandUUID"] == location_uuid
    fix = {"Latitude": 35.681236, "Longitude": 139.767125, "HorizontalAccuracy": 12.0}
    _fetch(app, ipad, ipad.result_body(location_uuid, **fix))
    location = client.get(url, headers=tokens["operator"]).get_json()["location"]
    assert location["latitude"] == 35.681236 and location["accuracy"] == 12.0
    assert location["map_url"] == "https://maps.google.com/?q=35.681236,139.767125"
    # Incidents carry callers' names and numbers: not for the dispatch systems.
    assert client.get(url, headers=tokens["dispatch"]).status_code == 403

    # The admin asks for the wipe and cannot approve it alone; an operator may not approve at all.
    asked = client.post(url + "/wipe-request", headers=tokens["admin"], json={"reason": "盗難の疑い"})
    assert asked.status_code == 200 and asked.get_json()["incident"]["status"] == "wipe_requested"
    same = client.post(url + "/wipe-approval", headers=tokens["admin"])
    assert same.status_code == 403 and same.get_json()["error"]["code"] == "two_person_rule"
    assert client.post(url + "/wipe-approval", headers=tokens["operator"]).status_code == 403
    no_reason = client.post(url + "/wipe-rejection", headers=tokens["approver"], json={"reason": ""})
    assert no_reason.status_code == 400 and "reason" in no_reason.get_json()["error"]["fields"]
    approved = client.post(url + "/wipe-approval", headers=tokens["approver"])
    assert approved.status_code == 200, approved.get_json()
    erase_uuid = approved.get_json()["command"]["uuid"]
    assert approved.get_json()["incident"]["wipe_progress"] == "approved_not_delivered"
    assert client.get(url + "/certificate", headers=tokens["operator"]).status_code == 404

    apns_server.wait_for_pushes(2, timeout=10)
    assert app.extensions["hikeshi"].dispatcher.wait_idle(10)
    erase = _fetch(app, ipad, ipad.idle_body())
    assert erase["CommandUUID"] == erase_uuid and erase["Command"]["RequestType"] == "EraseDevice"
    _fetch(app, ipad, ipad.result_body(erase_uuid))

    # Signed in the acknowledgement's transaction, before anyone asks for it.
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        row = s.scalars(select(WipeCertificate)).one()
        assert row.signature is not None and row.signer_fingerprint
        trusted = builtin_device_cas(s, conf)
    detail = client.get(url, headers=tokens["operator"]).get_json()
    assert detail["status"] == "wiped" and detail["wipe_progress"] == "confirmed"
    assert detail["certificate"]["signed"] is True
    content = client.get(url + "/certificate", headers=tokens["approver"])
    signature = client.get(url + "/certificate/signature", headers=tokens["approver"])
    assert content.status_code == 200 and signature.status_code == 200
    assert signature.headers["Content-Type"] == "application/pkcs7-signature"
    assert content.data == row.content and signature.data == row.signature
    verify_detached(content.data, signature.data, trusted)
    assert erase_uuid in content.get_data(as_text=True)
    page = client.get(url + "/certificate/html", headers=tokens["operator"])
    assert page.status_code == 200 and "消去完了証明書" in page.get_data(as_text=True)
    assert b"".join(c.public_bytes(Encoding.PEM) for c in trusted)

    listed = client.get("/api/v1/incidents?q=救急3隊", headers=tokens["operator"]).get_json()
    assert [i["id"] for i in listed["items"]] == [incident_id]
    assert client.get("/api/v1/incidents?active=true", headers=tokens["operator"]).get_json()["total"] == 0


def test_a_device_that_never_answers_shows_not_delivered_with_push_retries(
    pushing_app,  # noqa: F811
    device_ca,
    apns_server,
    push_topic,  # noqa: F811
):
    app, client = pushing_app, pushing_app.test_client()
    tokens = _tokens(app)
    ipad = _enrolled(app, device_ca, push_topic.topic, "ipad-silent", supervised=True)
    incident_id, _lock = _open_and_lock(app, client, tokens, _device_id(app, ipad.udid), apns_server)
    url = f"/api/v1/incidents/{incident_id}"
    apns_server.set_outage(503, count=2)
    assert client.post(url + "/wipe-request", headers=tokens["operator"], json={}).status_code == 200
    assert client.post(url + "/wipe-approval", headers=tokens["approver"]).status_code == 200
    apns_server.wait_for_pushes(4, timeout=20)
    assert app.extensions["hikeshi"].dispatcher.wait_idle(20)

    detail = client.get(url, headers=tokens["operator"]).get_json()
    assert detail["status"] == "wipe_approved" and detail["status_label_ja"] == "消去承認済み・未実行"
    assert detail["wipe_progress"] == "approved_not_delivered"
    assert detail["wiped_at"] is None and detail["certificate"] is None
    erase = next(c for c in detail["commands"] if c["request_type"] == "EraseDevice")
    assert erase["state"] == "pushed" and erase["acknowledged_at"] is None
    assert [p["attempt"] for p in detail["push_attempts"]] == [1, 3]
    assert any(e["kind"] == "push" and e["details"]["attempts"] == 3 for e in detail["timeline"])


def test_bad_input_and_break_glass_rules(pushing_app, device_ca, push_topic):  # noqa: F811
    app, client = pushing_app, pushing_app.test_client()
    tokens = _tokens(app)
    ipad = _enrolled(app, device_ca, push_topic.topic, "ipad-rules", supervised=False)
    device_id = _device_id(app, ipad.udid)
    missing = client.post("/api/v1/incidents", headers=tokens["operator"], json={"device_id": device_id})
    assert missing.status_code == 400 and "caller_name" in missing.get_json()["error"]["fields"]
    blank = client.post(
        "/api/v1/incidents", headers=tokens["operator"], json={"device_id": device_id, "caller_name": "  "}
    )
    assert blank.status_code == 400 and "caller_name" in blank.get_json()["error"]["fields"]
    phone = client.post(
        "/api/v1/incidents",
        headers=tokens["operator"],
        json={"device_id": device_id, "caller_name": "x", "callback_number": "call me"},
    )
    assert phone.status_code == 400 and "callback_number" in phone.get_json()["error"]["fields"]
    nowhere = client.post(
        "/api/v1/incidents", headers=tokens["operator"], json={"device_id": 999999, "caller_name": "x"}
    )
    assert nowhere.status_code == 404
    incident = client.post(
        "/api/v1/incidents", headers=tokens["operator"], json={"device_id": device_id, "caller_name": "x"}
    ).get_json()
    url = f"/api/v1/incidents/{incident['id']}"
    # Not supervised: the lock falls back to DeviceLock and says so.
    locked = client.post(
        url + "/lock", headers=tokens["operator"], json={"message": "拾得者は119へ"}
    ).get_json()
    assert locked["command"]["request_type"] == "DeviceLock" and "supervised" in locked["notice_en"]
    assert (
        client.post(url + "/break-glass", headers=tokens["approver"], json={"reason": "x"}).status_code == 403
    )
    no_reason = client.post(url + "/break-glass", headers=tokens["admin"], json={})
    assert no_reason.status_code == 400 and "reason" in no_reason.get_json()["error"]["fields"]
    glass = client.post(url + "/break-glass", headers=tokens["admin"], json={"reason": "情報流出の危険"})
    assert glass.status_code == 200
    detail = glass.get_json()["incident"]
    assert detail["break_glass"] is True
    assert [e["flagged"] for e in detail["timeline"] if e["action"] == "wipe_break_glass"] == [True]
    again = client.post(url + "/wipe-request", headers=tokens["operator"], json={})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "incident_state"
    assert client.get("/api/v1/incidents/2147483647", headers=tokens["operator"]).status_code == 404
