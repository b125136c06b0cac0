"""Issue 20 §3, over the real Apple protocol: a supervised iPad's Activation Lock.

- A device that never answered is "unknown", not "off"; once DeviceInformation says it is
  supervised, Hikeshi asks for its bypass code (ActivationLockBypassCode) and sends its unit's
  setting (Settings, MDMOptions.ActivationLockAllowedWhileSupervised: Apple's schema has no
  Activation Lock restriction), with answers shaped as devices send them: unexpected keys,
  partial answers, odd types.
- The code is stored sealed: not in the database in clear (raw results, audit details), not in
  the logs, not in the API or the device page; an administrator reveals it on the incident page
  after the wipe reached the tablet (audited); an operator cannot.
- The unit setting is inherited down the tree and changing it sends the new value.
"""

from __future__ import annotations

import logging
import plistlib
from typing import Any

import pytest
from sqlalchemy import select, text

import commands.incidents as hotline
from commands.activation_lock import after_enrollment
from commands.queue import enqueue_command
from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.models import (
    AuditEvent,
    Command,
    CommandStatus,
    Device,
    DeviceActivationLock,
    Incident,
    OrgUnit,
)
from mdm.ground.secretbox import unseal
from mdm.services.activation_lock.answers import UnreadableCode, bypass_code_of, settings_acknowledged
from mdm.services.activation_lock.escrow import BYPASS_CODE_PURPOSE
from mdm.services.activation_lock.unit_setting import unit_activation_lock
from tests.hotline.support import APPROVER, OPERATOR, REPORT
from tests.inventory.helpers import ADMIN
from tests.support.apple_device import SimulatedIPad
from tests.support.people import person
from tests.web.helpers import bearer, csrf_of, login, make_token, make_user

CODE = "DGRQ-P1FV-H3V9-J8CL-VJD7-ULCT"


@pytest.fixture
def enrolled(app, device_ca):
    cert, key = device_ca.issue_identity("ipad-al")
    ipad = SimulatedIPad(cert, key)
    client = app.test_client()
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    # The first inventory, answered empty: nothing is known about supervision yet.
    _drain_empty(client, ipad)
    with app.extensions["hikeshi"].session_factory() as s:
        device_id = s.scalars(select(Device.id).where(Device.udid == ipad.udid)).one()
    return ipad, device_id


def _drain_empty(client, ipad: SimulatedIPad) -> list[str]:
    seen = []
    response = ipad.connect(client, ipad.idle_body())
    while response.status_code == 200 and response.data:
        message = plistlib.loads(response.data)
        seen.append(message["Command"]["RequestType"])
        response = ipad.connect(client, ipad.result_body(message["CommandUUID"]))
    return seen


def _next(client, ipad: SimulatedIPad) -> dict[str, Any]:
    response = ipad.connect(client, ipad.idle_body())
    assert response.status_code == 200 and response.data
    return plistlib.loads(response.data)


def _queue(app, device_id: int, kind: str, params: dict[str, Any] | None = None) -> str:
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        return enqueue_command(s, s.get(Device, device_id), kind, params, actor=ADMIN, push=False).uuid


def _supervision_answer(app, client, ipad: SimulatedIPad, device_id: int, **answers: Any) -> None:
    uuid = _queue(app, device_id, "DeviceInformation")
    assert _next(client, ipad)["CommandUUID"] == uuid
    body = ipad.result_body(uuid, QueryResponses={**ipad.device_information(), **answers})
    assert ipad.connect(client, body).status_code == 200


def _pending(app, device_id: int) -> list[Command]:
    with app.extensions["hikeshi"].session_factory() as s:
        rows = s.scalars(
            select(Command)
            .where(Command.device_id == device_id, Command.status.in_(CommandStatus.PENDING))
            .order_by(Command.id)
        ).all()
        s.expunge_all()
        return list(rows)


def _everything_stored(app) -> bytes:
    """Every table's rows as bytes, to look for a secret in clear."""
    found = []
    engine = app.extensions["hikeshi"].engine
    with engine.connect() as conn:
        from mdm.ground.models import Base

        for table in Base.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                found.append(repr(tuple(row)).encode())
                found.extend(bytes(v) for v in row if isinstance(v, (bytes, memoryview)))
    return b"\n".join(found)


def test_unknown_until_the_device_answers_then_escrowed_sealed_and_shown_only_to_an_admin_after_a_wipe(
    app, enrolled, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    ipad, device_id = enrolled
    client = app.test_client()
    factory = app.extensions["hikeshi"].session_factory
    with factory() as s:
        admin = make_user(s, settings, "al-admin", "admin")
        operator = make_user(s, settings, "al-operator", "operator")
        token = make_token(s, "admin")
        s.commit()
    console = app.test_client()
    login(console, admin)

    # Never answered: unknown, not "off"; not escrowed; and nothing asked of an unknown device.
    page = console.get(f"/console/devices/{device_id}").get_data(as_text=True)
    assert 'id="device-activation-lock" data-state="unknown" data-escrowed="false"' in page
    assert [c.request_type for c in _pending(app, device_id)] == []

    # A partial answer that says nothing of supervision still asks for nothing.
    uuid = _queue(app, device_id, "DeviceInformation")
    assert _next(client, ipad)["CommandUUID"] == uuid
    ipad.connect(client, ipad.result_body(uuid, QueryResponses={"BatteryLevel": 0.5, "SomeNewKey": {"x": 1}}))
    assert _pending(app, device_id) == []

    # Supervised, Activation Lock on, keys Hikeshi does not know, MDMOptions without the key.
    _supervision_answer(
        app,
        client,
        ipad,
        device_id,
        IsSupervised=True,
        IsActivationLockEnabled=True,
        MDMOptions={"SomethingElse": True},
        FutureKey=[1, 2, 3],
    )
    assert [c.request_type for c in _pending(app, device_id)] == ["Settings", "ActivationLockBypassCode"]

    # The Settings command as Apple's schema shapes it; its answer with per-item statuses.
    settings_command = _next(client, ipad)
    assert settings_command["Command"] == {
        "RequestType": "Settings",
        "Settings": [{"Item": "MDMOptions", "MDMOptions": {"ActivationLockAllowedWhileSupervised": False}}],
    }
    ipad.connect(
        client,
        ipad.result_body(
            settings_command["CommandUUID"], Settings=[{"Item": "MDMOptions", "Status": "Acknowledged"}]
        ),
    )

    # The bypass code, with an unexpected key beside it.
    bypass = _next(client, ipad)
    assert bypass["Command"] == {"RequestType": "ActivationLockBypassCode"}
    ipad.connect(client, ipad.result_body(bypass["CommandUUID"], ActivationLockBypassCode=CODE, Extra="x"))
    assert _pending(app, device_id) == []

    with factory() as s:
        row = s.get(DeviceActivationLock, device_id)
        assert row is not None and row.bypass_code_sealed is not None
        assert unseal(settings.secret_key, BYPASS_CODE_PURPOSE, row.bypass_code_sealed).decode() == CODE
        assert row.allowed_acknowledged is False
    stored = _everything_stored(app)
    assert CODE.encode() not in stored  # raw results, audit details, params: nowhere in clear
    assert CODE not in caplog.text

    # The device page says on and escrowed, never the code; the API neither.
    page = console.get(f"/console/devices/{device_id}").get_data(as_text=True)
    assert 'data-state="on" data-escrowed="true"' in page and CODE not in page
    for path in (f"/api/v1/devices/{device_id}", f"/api/v1/devices/{device_id}/commands", "/api/v1/audit"):
        response = client.get(path, headers=bearer(token))
        assert CODE not in response.get_data(as_text=True), path

    # An incident, before the wipe: no reveal yet.
    with transaction(factory) as s:
        device = s.get(Device, device_id)
        incident = hotline.open_incident(s, device, REPORT, actor=OPERATOR)
        incident_id = incident.id
    incident_page = f"/console/hotline/incidents/{incident_id}"
    reveal = f"{incident_page}/activation-lock-bypass-code"
    html = console.get(incident_page).get_data(as_text=True)
    assert 'id="reveal-bypass-code"' not in html
    refused = console.post(reveal, data={"csrf_token": csrf_of(html)})
    assert refused.status_code == 302
    assert CODE not in console.get(incident_page).get_data(as_text=True)

    # The wipe, with two people; the tablet fetches the erase (and may never acknowledge it).
    with transaction(factory) as s:
        incident = s.get(Incident, incident_id)
        hotline.request_wipe(s, incident, actor=person(s, OPERATOR), reason="盗難")
        hotline.approve_wipe(s, incident, actor=person(s, APPROVER))
    assert _next(client, ipad)["Command"]["RequestType"] == "EraseDevice"

    # The operator sees no button and is refused by the door.
    other = app.test_client()
    login(other, operator)
    html = other.get(incident_page).get_data(as_text=True)
    assert 'id="reveal-bypass-code"' not in html
    assert other.post(reveal, data={"csrf_token": csrf_of(html)}).status_code == 403
    # Without the CSRF token, even the administrator is refused.
    assert console.post(reveal, data={}).status_code in (400, 403)

    html = console.get(incident_page).get_data(as_text=True)
    assert 'id="reveal-bypass-code"' in html and CODE not in html
    shown = console.post(reveal, data={"csrf_token": csrf_of(html)})
    assert shown.status_code == 200
    assert f'<code id="bypass-code">{CODE}</code>' in shown.get_data(as_text=True)
    assert shown.headers["Cache-Control"] == "no-store"
    with factory() as s:
        events = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "activation_lock.bypass_code_revealed")
        ).all()
        assert [(e.actor, e.target_id) for e in events] == [("user:al-admin", str(incident_id))]
        assert all(CODE not in repr(e.details) for e in events)
    assert CODE not in caplog.text


def test_a_device_without_a_code_is_not_escrowed_and_is_asked_again_only_after_it_enrolls_anew(app, enrolled):
    ipad, device_id = enrolled
    client = app.test_client()
    _supervision_answer(app, client, ipad, device_id, IsSupervised=True)
    kinds = []
    for _ in range(2):
        message = _next(client, ipad)
        kinds.append(message["Command"]["RequestType"])
        # Apple marks the key required; a device past its 15 days sends an empty one.
        ipad.connect(client, ipad.result_body(message["CommandUUID"], ActivationLockBypassCode=""))
    assert kinds == ["Settings", "ActivationLockBypassCode"]
    with app.extensions["hikeshi"].session_factory() as s:
        row = s.get(DeviceActivationLock, device_id)
        assert row.bypass_code_sealed is None and row.bypass_code_unavailable_at is not None
    # Another DeviceInformation does not ask again (no new supervision), nor does the page lie.
    _supervision_answer(app, client, ipad, device_id, IsSupervised=True)
    assert _pending(app, device_id) == []
    # Enrolling again (a wiped ADE tablet: DEVICE_ENROLLED with a later enrolled_at) asks again.
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        device = s.get(Device, device_id)
        device.enrolled_at = clock.now()
        after_enrollment(s, device, ADMIN, context=app.extensions["hikeshi"].commands)
    assert "ActivationLockBypassCode" in [c.request_type for c in _pending(app, device_id)]


def test_unit_setting_is_inherited_and_a_change_is_sent_to_the_supervised_tablets_below(
    app, enrolled, settings
):
    ipad, device_id = enrolled
    client = app.test_client()
    factory = app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        hq = OrgUnit(kind="hq", name_ja="本部")
        s.add(hq)
        s.flush()
        station = OrgUnit(kind="station", name_ja="中央署", parent_id=hq.id)
        s.add(station)
        s.flush()
        s.get(Device, device_id).org_unit_id = station.id
        hq_id, station_id = hq.id, station.id
    # The device allows it (its MDMOptions answer) but the tree sets nothing (not allowed).
    _supervision_answer(
        app,
        client,
        ipad,
        device_id,
        IsSupervised=True,
        MDMOptions={"ActivationLockAllowedWhileSupervised": True},
    )
    assert _drain_empty(client, ipad) == ["Settings", "ActivationLockBypassCode"]

    with factory() as s:
        admin = make_user(s, settings, "al-unit-admin", "admin")
    console = app.test_client()
    login(console, admin)
    page = f"/console/org-units/{hq_id}"
    html = console.get(page).get_data(as_text=True)
    assert 'data-allowed="false"' in html
    bad = console.post(
        f"/console/org-units/{hq_id}/activation-lock",
        data={"activation_lock": "maybe", "csrf_token": csrf_of(html)},
    )
    assert bad.status_code == 400 and "activation_lock" in bad.get_data(as_text=True)
    saved = console.post(
        f"/console/org-units/{hq_id}/activation-lock",
        data={"activation_lock": "allow", "csrf_token": csrf_of(html)},
    )
    assert saved.status_code == 302
    with factory() as s:
        assert unit_activation_lock(s, station_id).allowed is True
        assert unit_activation_lock(s, station_id).source_unit_id == hq_id
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "activation_lock.unit_setting_changed")
        ).one()
        assert event.details["after"] is True
    message = _next(client, ipad)
    assert message["Command"]["Settings"][0]["MDMOptions"] == {"ActivationLockAllowedWhileSupervised": True}
    # An Error for the item: not applied, so not recorded as what the device has.
    ipad.connect(
        client,
        ipad.result_body(message["CommandUUID"], Settings=[{"Item": "MDMOptions", "Status": "Error"}]),
    )
    with factory() as s:
        row = s.get(DeviceActivationLock, device_id)
        assert row.allowed_acknowledged is False  # still the earlier acknowledged value


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"ActivationLockBypassCode": CODE}, CODE),
        ({"ActivationLockBypassCode": f"  {CODE}\n"}, CODE),
        ({"ActivationLockBypassCode": CODE.encode()}, CODE),
        ({"ActivationLockBypassCode": ""}, None),
        ({}, None),
        ({"ActivationLockBypassCode": None, "Other": 1}, None),
    ],
)
def test_bypass_code_answers(report: dict[str, Any], expected: str | None) -> None:
    assert bypass_code_of(report) == expected


@pytest.mark.parametrize(
    "value", [12345, ["A-B"], {"code": "A"}, "ABC DEF", "A" * 200, "<script>", b"\xff\xfe"]
)
def test_unreadable_bypass_codes_are_refused_without_saying_them(value: Any) -> None:
    with pytest.raises(UnreadableCode) as err:
        bypass_code_of({"ActivationLockBypassCode": value})
    assert str(value) not in str(err.value) or isinstance(value, int)


@pytest.mark.parametrize(
    ("report", "applied"),
    [
        ({"Status": "Acknowledged"}, True),
        ({"Status": "Acknowledged", "Settings": [{"Status": "Acknowledged"}]}, True),
        ({"Status": "Acknowledged", "Settings": {"Status": "Error"}}, False),
        ({"Status": "Acknowledged", "Settings": [{"Status": "Acknowledged"}, {"Status": "Error"}]}, False),
        ({"Status": "Acknowledged", "Settings": "odd"}, True),
        ({"Status": "Error"}, False),
    ],
)
def test_settings_answers(report: dict[str, Any], applied: bool) -> None:
    assert settings_acknowledged(report) is applied
