"""The Apps and Books console page and CLI: Japanese first, the token uploaded and synced from
the page (the simulator behind it), the apps with total / assigned / available counts, a bad
file refused with 400 naming the field and nothing stored, settings.read to look and
settings.write to change, and the token never in a page, an answer or the CLI's output."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import AuditEvent, VppToken
from tests.vpp.conftest import SECRET
from tests.web.helpers import bearer, csrf_of, login, make_token, make_user
from tests.web.test_console_japanese import english_in, visible_text


def _upload(client: Any, data: bytes, name: str = "本部.vpptoken") -> Any:
    page = client.get("/console/vpp")
    return client.post(
        "/console/vpp/token",
        data={"csrf_token": csrf_of(page.data), "token": (BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_admin_uploads_and_syncs_in_japanese(
    settings: Any, vpp: Any, vpp_file: str, session: Session
) -> None:
    from mdm import create_app

    vpp.service.add_asset("1234567890", 30)
    vpp.service.add_asset("2222222222", 5)
    vpp.service.add_asset("3333333333", 1)
    vpp.service.assigned.add(("3333333333", "DMPX0001"))
    app = create_app(replace(settings, vpp_url=vpp.url, push_enabled=False))
    admin = make_user(session, settings, "vpp-admin", "admin")
    auditor = make_user(session, settings, "vpp-auditor", "auditor")
    operator = make_user(session, settings, "vpp-operator", "operator")
    session.commit()
    reader_token, operator_token = make_token(session, "auditor"), make_token(session, "operator")

    client = app.test_client()
    login(client, admin)
    page = client.get("/console/vpp")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "コンテンツトークンがありません" in html
    assert english_in(visible_text(html)) == []

    refused = _upload(client, b"not a token at all")
    assert refused.status_code == 400
    assert "コンテンツトークン（.vpptoken）ではありません" in refused.get_data(as_text=True)
    missing = _upload(client, b"")
    assert missing.status_code == 400 and "ファイル（.vpptoken）を選んで" in missing.get_data(as_text=True)
    session.rollback()
    assert session.scalars(select(VppToken)).all() == []

    assert _upload(client, vpp_file.encode()).status_code == 302
    page = client.get("/console/vpp")
    synced = client.post("/console/vpp/sync", data={"csrf_token": csrf_of(page.data)})
    assert synced.status_code == 302
    html = client.get("/console/vpp").get_data(as_text=True)
    assert "本部" in html and "横浜市消防局" in html
    assert english_in(visible_text(html)) == []
    row = html.split('id="vpp-asset-3333333333"')[1].split("</tr>")[0]
    cells = [c.split("</td>")[0].strip() for c in row.split("<td>")[1:]]
    assert cells[2:5] == ["1", "1", '<span class="attention">0</span>']
    assert vpp_file not in html and SECRET not in html

    # Read-only for the auditor, nothing for the operator.
    reader = app.test_client()
    login(reader, auditor)
    assert reader.get("/console/vpp").status_code == 200
    assert 'id="vpp-token-form"' not in reader.get("/console/vpp").get_data(as_text=True)
    assert _upload(reader, vpp_file.encode()).status_code == 403
    outsider = app.test_client()
    login(outsider, operator)
    assert outsider.get("/console/vpp").status_code == 403

    # The API: the same facts for settings.read, never the token; nothing for the operator.
    api = app.test_client()
    answer = api.get("/api/v1/vpp", headers=bearer(reader_token))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["token"]["location_name"] == "本部" and body["token"]["org_name"] == "横浜市消防局"
    counts = {
        a["adam_id"]: (a["total_count"], a["assigned_count"], a["available_count"]) for a in body["assets"]
    }
    assert counts == {"1234567890": (30, 0, 30), "2222222222": (5, 0, 5), "3333333333": (1, 1, 0)}
    assert SECRET not in answer.get_data(as_text=True) and vpp_file not in answer.get_data(as_text=True)
    assert api.get("/api/v1/vpp", headers=bearer(operator_token)).status_code == 403

    session.rollback()
    actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("vpp.%")))]
    assert actions[:3] == ["vpp.token_uploaded", "vpp.token_claimed", "vpp.synced"]
    audit_page = client.get("/console/audit").get_data(as_text=True)
    assert "コンテンツトークンをアップロード" in audit_page and SECRET not in audit_page


def test_cli_upload_status_and_doctor(
    settings: Any, vpp: Any, vpp_file: str, tmp_path: Any, monkeypatch: Any, session: Session
) -> None:
    from mdm.roots.cli import main
    from mdm.services import doctor

    for key, value in {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUSH_ENABLED": "0",
        "HIKESHI_VPP_URL": vpp.url,
    }.items():
        monkeypatch.setenv(key, value)
    vpp.service.add_asset("1234567890", 12)
    path = tmp_path / "sToken_for_本部.vpptoken"
    path.write_text(vpp_file)
    runner = CliRunner()
    assert "not configured" in doctor.check_vpp_token(session).state

    bad = tmp_path / "bad.vpptoken"
    bad.write_text("e30=")  # base64 of {}
    refused = runner.invoke(main, ["vpp", "upload-token", str(bad)])
    assert refused.exit_code == 1 and "token field is missing" in refused.output

    uploaded = runner.invoke(main, ["vpp", "upload-token", str(path)])
    assert uploaded.exit_code == 0, uploaded.output
    assert "location: 本部; 1 apps" in uploaded.output
    status = runner.invoke(main, ["vpp", "status"])
    assert status.exit_code == 0 and "1234567890" in status.output and "   12" in status.output
    for output in (uploaded.output, status.output):
        assert SECRET not in output and vpp_file not in output
    session.rollback()
    finding = doctor.check_vpp_token(session)
    assert finding.state == "ok" and "本部" in finding.ja

    vpp.service.token_state = "revoked"
    failed = runner.invoke(main, ["vpp", "sync"])
    assert failed.exit_code == 1 and "9625" in failed.output and "revoked" in failed.output
    session.rollback()
    assert doctor.check_vpp_token(session).state == "warn"
