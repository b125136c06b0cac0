"""Issue 21 §5–6 through the REST API: the catalog (App Store apps, .ipa and .apk uploads with
their hashes), unit rules, per-device state and why; the Android policy's apps (AMAPI-valid, with
the APK's URL, SHA-256 and signing certificate). And the attacker's angles: a user without
app.write, a tampered or re-signed APK, a leaked or guessed download URL."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.models import App, AuditEvent, Device, EnrollmentState
from mdm.services import orgunits
from mdm.services.android_channel.policy import current_policy
from tests.apps.packages import build_apk, build_ipa, signer
from tests.apps.support import make_unit
from tests.inventory.helpers import ADMIN
from tests.support.amapi_schema import policy_problems
from tests.web.helpers import bearer, make_token

RECORDS = "jp.fire.ems.records"
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def factory(app):
    return app.extensions["hikeshi"].session_factory


@pytest.fixture
def admin(factory):
    with transaction(factory) as s:
        return bearer(make_token(s, "admin"))


@pytest.fixture
def auditor(factory):
    with transaction(factory) as s:
        return bearer(make_token(s, "auditor"))


def _upload(client, headers, kind: str, data: bytes, filename: str):
    return client.post(
        f"/api/v1/app-catalog/packages?kind={kind}&filename={filename}",
        data=data,
        headers={**headers, **OCTET},
    )


def _android_device(factory, unit_id: int) -> int:
    with transaction(factory) as s:
        device = Device(
            platform="android",
            serial_number="R52T00021",
            enrollment_state=EnrollmentState.ENROLLED,
            created_at=clock.now(),
            enrolled_at=clock.now(),
        )
        s.add(device)
        s.flush()
        orgunits.assign_device(s, device, s.get(orgunits.OrgUnit, unit_id), actor=ADMIN)
        return device.id


def test_an_apk_reaches_the_android_policy_with_its_url_hash_and_signer(
    app, client, factory, admin, settings
):
    apk = build_apk(RECORDS, 42, "4.2", signed_by=signer("ems-vendor"))
    uploaded = _upload(client, admin, "android_apk", apk, "records.apk")
    assert uploaded.status_code == 201, uploaded.json
    body = uploaded.json
    cert, _key = signer("ems-vendor")
    from cryptography.hazmat.primitives.serialization import Encoding

    cert_sha = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    assert (body["identifier"], body["version_code"], body["sha256"]) == (
        RECORDS,
        42,
        hashlib.sha256(apk).hexdigest(),
    )
    assert (body["signing_cert_sha256"], body["signing_scheme"]) == (cert_sha, "v2")

    unit_id = make_unit(app, "HIGASHI")
    rule = client.post(
        f"/api/v1/org-units/{unit_id}/apps",
        json={"action": "required", "app_id": body["id"], "configuration": {"station": "{station_name}"}},
        headers=admin,
    )
    assert rule.status_code == 201, rule.json
    blocked = client.post(
        f"/api/v1/org-units/{unit_id}/apps",
        json={"action": "blocked", "platform": "android", "identifier": "com.example.game"},
        headers=admin,
    )
    assert blocked.status_code == 201
    device_id = _android_device(factory, unit_id)

    with factory() as s:
        policy = current_policy(s, s.get(Device, device_id), public_url=settings.public_url)
    apps = {a["packageName"]: a for a in policy.policy["applications"]}
    assert apps["com.example.game"] == {"packageName": "com.example.game", "installType": "BLOCKED"}
    required = apps[RECORDS]
    assert required["installType"] == "FORCE_INSTALLED" and required["minimumVersionCode"] == 42
    assert required["managedConfiguration"] == {"station": "HIGASHI消防署"}
    assert (
        base64.b64decode(required["signingKeyCerts"][0]["signingKeyCertFingerprintSha256"]).hex() == cert_sha
    )
    assert policy_problems(policy.policy) == []
    [source] = policy.body()["app_sources"]
    assert (source["sha256"], source["signing_cert_sha256"]) == (body["sha256"], cert_sha)

    # The agent downloads what the policy names, and it is the file that was uploaded.
    served = client.get(urlparse(source["download_url"]).path)
    assert served.status_code == 200 and hashlib.sha256(served.data).hexdigest() == source["sha256"]

    # A new version changes the policy's version (the agent applies it); the old one is not kept.
    _upload(
        client, admin, "android_apk", build_apk(RECORDS, 43, "4.3", signed_by=signer("ems-vendor")), "r.apk"
    )
    with factory() as s:
        newer = current_policy(s, s.get(Device, device_id), public_url=settings.public_url)
    assert newer.version != policy.version
    assert {a["packageName"]: a for a in newer.policy["applications"]}[RECORDS]["minimumVersionCode"] == 43

    # The device page's state: required, its agent has not reported it yet.
    states = client.get(f"/api/v1/devices/{device_id}/app-state", headers=admin).json
    assert {s["identifier"]: s["state"] for s in states}[RECORDS] == "unknown"


def test_an_apk_signed_by_someone_else_or_broken_is_refused_and_nothing_changes(client, factory, admin):
    assert (
        _upload(
            client, admin, "android_apk", build_apk(RECORDS, 1, signed_by=signer("vendor")), "a.apk"
        ).status_code
        == 201
    )
    # An update signed with another key (what a tampered, re-signed APK is): refused, like Android would.
    other = _upload(
        client, admin, "android_apk", build_apk(RECORDS, 2, signed_by=signer("attacker")), "a.apk"
    )
    assert other.status_code == 400 and "file" in other.json["error"]["fields"]
    # A signing block whose signature does not verify with its certificate.
    apk = bytearray(build_apk(RECORDS, 3, signed_by=signer("vendor")))
    marker = apk.find(b"APK Sig Block 42")
    apk[marker - 40] ^= 0xFF  # inside the v2 signer's signature
    broken = _upload(client, admin, "android_apk", bytes(apk), "a.apk")
    assert broken.status_code == 400 and "file" in broken.json["error"]["fields"]
    for junk in (b"", b"not a zip", build_ipa("jp.fire.x")):
        assert _upload(client, admin, "android_apk", junk, "x.apk").status_code == 400
    with factory() as s:
        [app] = s.scalars(select(App)).all()
        assert app.version_code == 1


def test_without_app_write_nothing_changes(client, factory, admin, auditor):
    assert client.get("/api/v1/app-catalog", headers=auditor).status_code == 200
    ipa = build_ipa("jp.fire.hospital")
    assert _upload(client, auditor, "enterprise", ipa, "h.ipa").status_code == 403
    store = {"itunes_store_id": 1, "identifier": "jp.fire.maps", "name": "Maps"}
    assert client.post("/api/v1/app-catalog/store", json=store, headers=auditor).status_code == 403
    with transaction(factory) as s:
        operator = bearer(make_token(s, "operator"))
    assert client.get("/api/v1/app-catalog", headers=operator).status_code == 403
    with factory() as s:
        assert s.scalars(select(App)).all() == []
        assert s.scalars(select(AuditEvent).where(AuditEvent.action.like("app.%"))).all() == []
    # The administrator's changes are audited.
    assert client.post("/api/v1/app-catalog/store", json=store, headers=admin).status_code == 201
    not_a_bundle_id = {**store, "identifier": "not a bundle id"}
    bad = client.post("/api/v1/app-catalog/store", json=not_a_bundle_id, headers=admin)
    assert bad.status_code == 400 and "identifier" in bad.json["error"]["fields"]
    with factory() as s:
        assert [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.action.like("app.%")))] == [
            "app.added"
        ]


def test_a_leaked_download_url_stops_working_when_rotated_and_guesses_find_nothing(client, admin):
    uploaded = _upload(client, admin, "enterprise", build_ipa("jp.fire.hospital", "3.0"), "hospital.ipa").json
    leaked = urlparse(uploaded["download_url"]).path
    assert client.get(leaked).status_code == 200
    token = leaked.split("/")[3]
    assert len(token) >= 43  # 256 random bits
    # Another file name under the token, a guessed token, the manifest under a wrong token: 404.
    assert client.get(leaked.rsplit("/", 1)[0] + "/other.ipa").status_code == 404
    assert (
        client.get(leaked.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))).status_code == 404
    )
    assert client.get(f"/apps/manifests/{token}x.plist").status_code == 404
    rotated = client.post(f"/api/v1/app-catalog/{uploaded['id']}/download-url", headers=admin)
    assert rotated.status_code == 200
    assert client.get(leaked).status_code == 404
    assert client.get(f"/apps/manifests/{token}.plist").status_code == 404
    fresh = client.get(urlparse(rotated.json["download_url"]).path)
    assert fresh.status_code == 200 and hashlib.sha256(fresh.data).hexdigest() == uploaded["sha256"]
    assert fresh.headers["Cache-Control"] == "private, no-store"
