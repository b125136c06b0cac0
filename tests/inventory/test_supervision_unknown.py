"""Unknown is shown as unknown (issue 14, item 3): IsSupervised that a device never reported is
null in the model, the API and the console, never "false"; the device's own DeviceInformation
answer (Apple's information.device.yaml key IsSupervised) sets it; migration 0007 turns the old
default false of devices that never reported into null, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import plistlib
import tempfile
from pathlib import Path

import yaml
from sqlalchemy import create_engine, select, text

from mdm.ground.db import upgrade_database
from mdm.ground.models import Device
from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.protocol.test_apple_loop import _enroll, fresh
from tests.support.apple_schema import schema_dir_or_skip
from tests.web.helpers import bearer, login, make_token, make_user


def test_is_supervised_is_a_device_information_query() -> None:
    doc = yaml.safe_load((schema_dir_or_skip().parent / "commands" / "information.device.yaml").read_text())
    [queries] = [k for k in doc["payloadkeys"] if k["key"] == "Queries"]
    assert "IsSupervised" in [k["key"] for k in queries["subkeys"][0]["subkeys"]]
    [responses] = [k for k in doc["responsekeys"] if k["key"] == "QueryResponses"]
    [answer] = [k for k in responses["subkeys"] if k["key"] == "IsSupervised"]
    assert answer["type"] == "<boolean>"


def test_never_reported_is_null_until_the_device_answers(app, client, ipad, session, settings):
    _enroll(client, ipad)
    fresh(session)
    device = session.scalars(select(Device).where(Device.udid == ipad.udid)).one()
    assert device.is_supervised is None
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "admin"))
        account = make_user(s, settings, "admin-unknown", "admin")
    assert client.get(f"/api/v1/devices/{device.id}", headers=token).get_json()["supervised"] is None
    listed = client.get("/api/v1/devices", headers=token).get_json()["items"]
    assert [d["supervised"] for d in listed] == [None]
    console = app.test_client()
    login(console, account)
    page = console.get(f"/console/devices/{device.id}").get_data(as_text=True)
    assert 'data-value="unknown"' in page and "不明(端末から未報告)" in page
    # Lost mode needs a supervised device: refused with the reason that it is unknown.
    refused = client.post(
        f"/api/v1/devices/{device.id}/commands",
        headers=token,
        json={"request_type": "EnableLostMode", "params": {"Message": "紛失"}},
    )
    assert (
        refused.status_code == 409
        and "has not reported whether it is" in refused.get_json()["error"]["message"]
    )

    # The enrollment queued DeviceInformation; an unsupervised iPad answers IsSupervised false.
    ipad.supervised = False
    while data := ipad.connect(client, ipad.idle_body()).data:
        command = plistlib.loads(data)
        extra = {}
        if command["Command"]["RequestType"] == "DeviceInformation":
            extra = {"QueryResponses": ipad.device_information()}
        ipad.connect(client, ipad.result_body(command["CommandUUID"], **extra))
    assert client.get(f"/api/v1/devices/{device.id}", headers=token).get_json()["supervised"] is False
    page = console.get(f"/console/devices/{device.id}").get_data(as_text=True)
    assert 'data-value="false"' in page


def _migration_url() -> tuple[str, object]:
    base = os.environ.get("HIKESHI_TEST_DATABASE_URL")
    if base:
        url, name = _fresh_postgres_database(base)
        return url, lambda: _drop_postgres_database(base, name)
    tmp = tempfile.TemporaryDirectory(prefix="hikeshi-mig-")
    return f"sqlite:///{Path(tmp.name) / 'm.db'}", tmp.cleanup


def test_migration_0007_turns_unreported_false_into_null() -> None:
    url, cleanup = _migration_url()
    try:
        upgrade_database(url, "0002")
        engine = create_engine(url)
        with engine.begin() as conn:
            for udid, platform in (
                ("NEVER", "apple"),
                ("SAID-YES", "apple"),
                ("SAID-NO", "apple"),
                ("DROID", "android"),
            ):
                conn.execute(
                    text(
                        "INSERT INTO devices (platform, udid, is_supervised, enrollment_state, created_at)"
                        " VALUES (:p, :u, :s, 'enrolled', CURRENT_TIMESTAMP)"
                    ),
                    {"p": platform, "u": udid, "s": udid in ("SAID-YES", "DROID")},
                )
            for udid, value in (("SAID-YES", True), ("SAID-NO", False)):
                conn.execute(
                    text(
                        "INSERT INTO device_facts (device_id, is_supervised, raw_device_information,"
                        " raw_security_info) SELECT id, :v, '{}', '{}' FROM devices WHERE udid = :u"
                    ),
                    {"v": value, "u": udid},
                )
            conn.execute(
                text(
                    "INSERT INTO commands (uuid, device_id, request_type, params, priority, status,"
                    " requested_by, queued_at, delivery_count) SELECT 'C-1', id, 'DeviceLock', '{}', 100,"
                    " 'acknowledged', 'admin', CURRENT_TIMESTAMP, 1 FROM devices WHERE udid = 'NEVER'"
                )
            )
        upgrade_database(url, "0007")
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT udid, supervised FROM devices")).all())
            facts = conn.execute(text("SELECT count(*) FROM device_facts")).scalar()
            lock = conn.execute(text("SELECT message_result, request_type FROM commands")).one()
        engine.dispose()
        assert rows == {"NEVER": None, "SAID-YES": True, "SAID-NO": False, "DROID": True}
        assert facts == 2  # nothing that hangs off a device was lost on the way
        assert tuple(lock) == (None, "DeviceLock")
    finally:
        cleanup()
