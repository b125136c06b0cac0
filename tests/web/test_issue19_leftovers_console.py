"""Issue #19 leftovers in the console, over the real app and a real SMTP server (aiosmtpd):

- a station's lock-screen message and callback number, set on its org unit (audited), inherited
  down the tree, prefilled in the hotline's lock form and sent by lock now as typed;
- a user's e-mail address (validated, audited);
- the mail server set in the console (password sealed at rest, admin only, audited), its test
  mail, and the wipe request mailed to each approver by the mail job.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from mdm.ground.models import AuditEvent, Command, MailStatus, OrgUnit, OutgoingMail, SmtpSettings, User
from mdm.roots.scheduler.jobs import JobContext, mail_delivery
from tests.security.scan import scan_database
from tests.support.smtp_server import smtp_server
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import login, make_user, post_form


def _client(app: Any, account: Any) -> Any:
    client = app.test_client()
    login(client, account)
    return client


def _events(session_factory: Any, action: str) -> list[AuditEvent]:
    with session_factory() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_station_lock_text_is_inherited_prefilled_and_sent(app, tree, session_factory, settings):  # noqa: F811
    with session_factory() as session:
        admin = make_user(session, settings, "it-admin", "admin")
    client = _client(app, admin)
    hq, station, unit = tree.hq.id, tree.station_a.id, tree.unit_a1.id
    page = f"/console/org-units/{hq}"
    saved = post_form(
        client,
        f"/console/org-units/{hq}/lock-text",
        {"lock_message": "", "lock_phone": "03-3212-2111"},
        page=page,
    )
    assert saved.status_code == 302
    post_form(
        client,
        f"/console/org-units/{station}/lock-text",
        {"lock_message": "中央消防署へお届けください", "lock_phone": ""},
        page=f"/console/org-units/{station}",
    )
    refused = post_form(
        client,
        f"/console/org-units/{unit}/lock-text",
        {"lock_message": "x", "lock_phone": "call me"},
        page=f"/console/org-units/{unit}",
    )
    assert refused.status_code == 302
    shown = client.get(f"/console/org-units/{unit}").get_data(as_text=True)
    assert "電話番号に使えるのは数字と" in shown  # the refusal names the field, in Japanese
    with session_factory() as session:
        assert session.get(OrgUnit, unit).lock_message is None  # nothing half-written
        assert session.get(OrgUnit, hq).lock_phone == "03-3212-2111"
    effective = re.search(r'id="lock-text-effective".*?</dl>', shown, re.S)
    assert effective and "中央消防署へお届けください" in effective.group(0)
    assert "03-3212-2111" in effective.group(0) and "(火消し消防本部 の設定)" in effective.group(0)
    changed = _events(session_factory, "org_unit.lock_text_changed")
    assert [e.target_id for e in changed] == [str(hq), str(station)]
    assert changed[0].details["changes"]["phone_number"] == {"from": None, "to": "03-3212-2111"}

    # The hotline's lock form is prefilled with the station's text ...
    search = client.get("/console/hotline?q=SERIALA0001").get_data(as_text=True)
    assert re.search(r'name="lock_message"[^>]*>中央消防署へお届けください</textarea>', search)
    assert re.search(r'name="lock_phone"[^>]*value="03-3212-2111"', search)
    # So is the device page's own command form (used only by DeviceLock and EnableLostMode).
    device_page = client.get(f"/console/devices/{tree.device_a.id}").get_data(as_text=True)
    assert re.search(r'name="message"[^>]*value="中央消防署へお届けください"', device_page)
    assert re.search(r'name="phone_number"[^>]*value="03-3212-2111"', device_page)
    # ... and lock now sends what the operator left there or typed.
    locked = post_form(
        client,
        f"/console/hotline/devices/{tree.device_a.id}/incident",
        {
            "caller_name": "救急1隊 山田",
            "action": "lock",
            "lock_message": "拾得者は119番へ",
            "lock_phone": "119",
        },
        page="/console/hotline?q=SERIALA0001",
    )
    assert locked.status_code == 302 and "/console/hotline/incidents/" in locked.headers["Location"]
    with session_factory() as session:
        command = session.scalars(select(Command).where(Command.device_id == tree.device_a.id)).one()
        assert command.request_type == "EnableLostMode"  # device_a is supervised
        assert command.params["Message"] == "拾得者は119番へ" and command.params["PhoneNumber"] == "119"
    incident_page = client.get(locked.headers["Location"]).get_data(as_text=True)
    finder = re.search(r'id="finder-screen".*?</div>', incident_page, re.S)
    assert finder and "端末からの応答がまだありません" in finder.group(0)
    assert "拾得者は119番へ" not in finder.group(0).split("finder-waiting")[0]  # not claimed as shown


def test_a_bad_lock_phone_on_the_hotline_names_the_field_and_queues_nothing(
    app,
    tree,  # noqa: F811
    session_factory,
    settings,
):
    with session_factory() as session:
        operator = make_user(session, settings, "op-suzuki", "operator")
    client = _client(app, operator)
    refused = post_form(
        client,
        f"/console/hotline/devices/{tree.device_a.id}/incident",
        {"caller_name": "山田", "action": "lock", "lock_message": "msg", "lock_phone": "call me"},
        page="/console/hotline?q=SERIALA0001",
    )
    assert refused.status_code == 302
    page = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "ロック画面の連絡先電話番号" in page
    with session_factory() as session:
        assert session.scalars(select(Command)).first() is None


def test_user_email_is_validated_and_audited(app, tree, session_factory, settings):  # noqa: F811
    with session_factory() as session:
        admin = make_user(session, settings, "it-admin", "admin")
        approver = make_user(session, settings, "duty-sato", "approver")
    client = _client(app, admin)
    path = f"/console/users/{approver.user_id}"
    form = {"display_name": "佐藤", "role": "approver", "org_unit_id": ""}
    bad = post_form(client, path, {**form, "email": "sato@example.jp\r\nBcc: x@y.jp"})
    assert bad.status_code == 200 and "メールアドレスの形式ではありません" in bad.get_data(as_text=True)
    with session_factory() as session:
        assert session.get(User, approver.user_id).email is None
    good = post_form(client, path, {**form, "email": "sato@fire.example.jp"})
    assert good.status_code == 302
    with session_factory() as session:
        assert session.get(User, approver.user_id).email == "sato@fire.example.jp"
    [event] = _events(session_factory, "user.email_changed")
    assert event.details["changes"]["email"] == {"from": None, "to": "sato@fire.example.jp"}
    assert "sato@fire.example.jp" in client.get(path).get_data(as_text=True)


def test_mail_server_in_the_console_test_mail_and_approvers_told(
    app,
    tree,  # noqa: F811
    session_factory,
    settings,
):
    with session_factory() as session:
        admin = make_user(session, settings, "it-admin", "admin")
        scoped = make_user(session, settings, "st-admin", "admin", org_unit_id=tree.station_b.id)
        auditor = make_user(session, settings, "kansa", "auditor")
        operator = make_user(session, settings, "op-tanaka", "operator")
        near = make_user(session, settings, "duty-sato", "approver")
        far = make_user(session, settings, "duty-kita", "approver", org_unit_id=tree.station_b.id)
        quiet = make_user(session, settings, "duty-nomail", "approver")
        for account, address in ((admin, "it@fire.example.jp"), (near, "sato@fire.example.jp")):
            session.get(User, account.user_id).email = address
        session.get(User, far.user_id).email = "kita@fire.example.jp"
        session.get(User, operator.user_id).email = "tanaka@fire.example.jp"
        session.commit()
    assert quiet.user_id
    for outsider in (scoped, auditor):
        other = _client(app, outsider)
        assert other.get("/console/settings/mail").status_code == 403
    client = _client(app, admin)
    with smtp_server(user="hikeshi", password="s3cret pass") as server:
        bad = post_form(
            client, "/console/settings/mail", {"host": "mail server", "port": "99999", "tls_mode": "ssl"}
        )
        assert bad.status_code == 400
        text = bad.get_data(as_text=True)
        assert "ホスト名またはアドレス" in text and "ポート番号" in text
        saved = post_form(
            client,
            "/console/settings/mail",
            {
                "host": "127.0.0.1",
                "port": str(server.port),
                "tls_mode": "none",
                "username": "hikeshi",
                "password": "s3cret pass",
                "from_address": "mdm@fire.example.jp",
            },
        )
        assert saved.status_code == 302
        with session_factory() as session:
            row = session.get(SmtpSettings, 1)
            assert row.password_sealed is not None and b"s3cret" not in row.password_sealed
        [changed] = _events(session_factory, "smtp.settings_changed")
        assert changed.details["password_stored"] is True and "s3cret" not in str(changed.details)
        tested = post_form(
            client, "/console/settings/mail/test", {"to": "it@fire.example.jp"}, page="/console/settings/mail"
        )
        assert tested.status_code == 302
        [test_mail] = server.received
        assert test_mail.recipients == ["it@fire.example.jp"] and test_mail.login == "hikeshi"
        assert "テストメール" in test_mail.message["Subject"]
        [tested_event] = _events(session_factory, "smtp.test_sent")
        assert tested_event.details["error"] is None

        # A wipe request: each approver who may decide it and has an address gets one mail.
        requester = _client(app, operator)
        opened = post_form(
            requester,
            f"/console/hotline/devices/{tree.device_a.id}/incident",
            {"caller_name": "山田", "action": "open"},
            page="/console/hotline?q=SERIALA0001",
        )
        incident_path = opened.headers["Location"]
        incident_id = int(incident_path.rsplit("/", 1)[1])
        post_form(requester, f"{incident_path}/wipe-request", {"reason": "車内で盗難"}, page=incident_path)
        assert mail_delivery(JobContext(session_factory, settings, "t")) == {
            "enabled": True,
            "attempted": 2,
            "sent": 2,
        }
        assert mail_delivery(JobContext(session_factory, settings, "t"))["attempted"] == 0
    mails = {r.recipients[0]: r for r in server.received[1:]}
    assert sorted(mails) == ["it@fire.example.jp", "sato@fire.example.jp"]  # not kita (scope), not tanaka
    body = mails["sato@fire.example.jp"].message.get_content()
    assert "救急1 iPad" in body and "op-tanaka" in body and "車内で盗難" in body
    assert f"/console/hotline/incidents/{incident_id}" in body
    with session_factory() as session:
        assert {m.status for m in session.scalars(select(OutgoingMail))} == {MailStatus.SENT}
    # The SMTP password is nowhere at rest, in any encoding (audit details included).
    hits, rows = scan_database(app.extensions["hikeshi"].engine, {"smtp password": "s3cret pass"})
    assert rows > 0 and hits == []
