"""Asset tags and users of many tablets from one CSV file (issue #19 item 10): the template of the
user's tablets, a checked preview, all-or-nothing application, audited, scoped; Shift_JIS too."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select

from mdm.ground.models import AuditEvent, Device
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import csrf_of, login, make_user

PAGE = "/console/devices/labels/import"


def _client(app: Any, account: Any) -> Any:
    client = app.test_client()
    login(client, account)
    return client


def _upload(client: Any, text: str, encoding: str = "utf-8") -> Any:
    token = csrf_of(client.get(PAGE).data)
    data = {"csv": (io.BytesIO(text.encode(encoding)), "labels.csv"), "csrf_token": token}
    return client.post(PAGE, data=data, content_type="multipart/form-data")


def test_labels_from_a_csv_file_checked_then_applied(app, tree, session_factory, settings):  # noqa: F811
    with session_factory() as session:
        admin = make_user(session, settings, "chief-csv", "admin")
        local = make_user(session, settings, "central-csv", "admin", org_unit_id=tree.station_a.id)
        operator = make_user(session, settings, "op-csv", "operator")
    client = _client(app, admin)
    assert 'id="bulk-labels-link"' in client.get("/console/devices").get_data(as_text=True)
    template = client.get("/console/devices/labels/template.csv")
    body = template.data.decode("utf-8")
    assert template.mimetype == "text/csv" and body.startswith("\ufeffシリアル番号,端末名,資産番号,使用者")
    assert "SERIALA0001,救急1 iPad" in body and "SERIALB0002" in body

    # Excel's Japanese CSV (Shift_JIS): checked and shown, nothing written yet.
    sheet = (
        "シリアル番号,端末名,資産番号,使用者\r\n"
        "SERIALA0001,救急1 iPad,FD-001,救急1隊 隊長\r\n"
        "SERIALB0002,,FD-002,\r\n"
    )
    preview = _upload(client, sheet, "cp932")
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="bulk-labels-apply"' in html
    assert "FD-001" in html and "救急1隊 隊長" in html and "2台を変更します" in html
    with session_factory() as session:
        assert session.scalars(select(Device.asset_tag).where(Device.asset_tag.is_not(None))).all() == []
    applied = client.post(PAGE, data={"csv_text": sheet, "confirmed": "yes", "csrf_token": csrf_of(html)})
    assert applied.status_code == 302
    with session_factory() as session:
        a = session.get(Device, tree.device_a.id)
        b = session.get(Device, tree.device_b.id)
        assert (a.asset_tag, a.assigned_user, b.asset_tag, b.assigned_user) == (
            "FD-001",
            "救急1隊 隊長",
            "FD-002",
            None,
        )
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "device.labels_updated")).all()
        assert sorted(e.target_id for e in events) == sorted([str(tree.device_a.id), str(tree.device_b.id)])

    # One bad row refuses the whole file, naming line and column; "-" clears, blank keeps.
    bad = "serial_number,asset_tag,assigned_user\nSERIALA0001,-,\nSERIALX9999,FD-9,\nSERIALB0002,FD-001,\n"
    refused = _upload(client, bad)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'id="bulk-labels-problems"' in text
    assert "SERIALX9999" in text and "FD-001 は端末 救急1 iPad に設定済み" in text
    with session_factory() as session:
        assert session.get(Device, tree.device_a.id).asset_tag == "FD-001"
    for broken, needle in (
        ("foo,bar\n1,2\n", "シリアル番号の列が必要"),
        ("", "CSVファイルを選んでください"),
        ("serial_number,asset_tag\nSERIALA0001,x\nSERIALA0001,y\n", "2行目と重複"),
        ("serial_number,asset_tag\nSERIALA0001," + "x" * 65 + "\n", "64文字以内"),
    ):
        answer = _upload(client, broken)
        assert answer.status_code == 400 and needle in answer.get_data(as_text=True), needle
    cleared = "serial_number,asset_tag\nSERIALA0001,-\n"
    page = _upload(client, cleared).get_data(as_text=True)
    client.post(PAGE, data={"csv_text": cleared, "confirmed": "yes", "csrf_token": csrf_of(page)})
    with session_factory() as session:
        assert session.get(Device, tree.device_a.id).asset_tag is None

    # Scope: station A's administrator cannot reach station B's tablet; an operator cannot upload.
    scoped = _client(app, local)
    assert "SERIALB0002" not in scoped.get("/console/devices/labels/template.csv").data.decode()
    outside = _upload(scoped, "serial_number,asset_tag\nSERIALB0002,FD-777\n")
    assert outside.status_code == 400 and "SERIALB0002" in outside.get_data(as_text=True)
    assert _client(app, operator).get(PAGE).status_code == 403
