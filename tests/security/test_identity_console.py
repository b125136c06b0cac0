"""Issue 13, item 7 and the external-CA path: an identity conflict from a third-party CA's
identity (HIKESHI_DEVICE_CA_FILE) shows on the console's alerts page, Japanese first, with both
certificates; an administrator lets the tablet re-enroll from its device page."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.x509util import fingerprint
from tests.security.identity_support import alerts, device_of, events, snapshot
from tests.support.apple_device import SimulatedIPad
from tests.web.helpers import csrf_of, login, make_user


def _console(app: Any, session_factory: Any, settings: Any, username: str, role: str) -> Any:
    with session_factory() as session:
        account = make_user(session, settings, username, role)
    browser = app.test_client()
    login(browser, account)
    return browser


def test_external_ca_identity_binds_first_come_then_conflicts_show_on_the_console(
    app: Any,
    client: Any,
    ipad: SimulatedIPad,
    device_ca: Any,
    session: Session,
    session_factory: Any,
    settings: Any,
) -> None:
    # A UDID never enrolled: the external CA's identity binds at its first Authenticate.
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    device = device_of(session, ipad.udid)
    [row] = device.certificates
    assert (row.purpose, row.enrollment_token_id) == ("mdm_identity", None)

    # A second identity from the same CA for the enrolled UDID is a conflict.
    cert, key = device_ca.issue_identity("ipad-other")
    impostor = SimulatedIPad(cert, key, udid=ipad.udid, serial=ipad.serial, topic=ipad.topic)
    before = snapshot(session)
    assert impostor.checkin(client, impostor.authenticate_body()).status_code == 403
    assert snapshot(session) == before
    [alert] = alerts(session, "device.identity_conflict")

    admin = _console(app, session_factory, settings, "admin-suzuki", "admin")
    listed = admin.get("/console/alerts").get_data(as_text=True)
    assert "端末識別情報の衝突" in listed
    assert "Identity conflict" not in listed  # a Japanese console shows the Japanese half of the title
    page = admin.get(f"/console/alerts/{alert.id}").get_data(as_text=True)
    assert 'id="identity-conflict"' in page
    assert fingerprint(cert) in page and fingerprint(ipad.identity_cert) in page
    assert "運用手順書" in page

    # The administrator (who has the tablet in hand) allows re-enrollment from the device page.
    device_page = f"/console/devices/{device.id}"
    html = admin.get(device_page).get_data(as_text=True)
    assert 'id="reenroll-form"' in html
    refused = admin.post(device_page + "/reenroll", data={"hours": "0", "csrf_token": csrf_of(html)})
    assert refused.status_code == 302 and device_of(session, ipad.udid).reenroll_allowed_until is None
    html = admin.get(device_page).get_data(as_text=True)
    done = admin.post(device_page + "/reenroll", data={"hours": "2", "csrf_token": csrf_of(html)})
    assert done.status_code == 302
    assert 'id="reenroll-allowed"' in admin.get(device_page).get_data(as_text=True)
    [granted] = events(session, "device.reenroll_allowed")
    assert granted.actor.endswith("admin-suzuki")

    assert impostor.checkin(client, impostor.authenticate_body()).status_code == 200
    assert ipad.connect(client, ipad.idle_body()).status_code == 401  # its old identity is revoked


def test_operators_cannot_allow_reenrollment(
    app: Any, client: Any, ipad: SimulatedIPad, session: Session, session_factory: Any, settings: Any
) -> None:
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    device = device_of(session, ipad.udid)
    operator = _console(app, session_factory, settings, "op-tanaka", "operator")
    page = f"/console/devices/{device.id}"
    html = operator.get(page).get_data(as_text=True)
    assert 'id="reenroll-form"' not in html
    posted = operator.post(page + "/reenroll", data={"hours": "2", "csrf_token": csrf_of(html)})
    assert posted.status_code == 403
    assert device_of(session, ipad.udid).reenroll_allowed_until is None
