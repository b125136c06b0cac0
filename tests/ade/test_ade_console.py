"""The ADE console page: Japanese first, the certificate for ABM out, the server token in (a real
`openssl smime -encrypt` .p7m), the units' ADE profiles and the placement rules saved, the
devices synced from ABM listed with their unit and profile status."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import AdeAssignmentRule, AdeDevice, AdeProfile, AdeServerToken, OrgUnit
from tests.ade.conftest import abm_token, token_fields
from tests.web.helpers import csrf_of, login, make_user, post_form
from tests.web.test_console_japanese import english_in, visible_text


def test_admin_sets_up_ade_in_japanese(settings: Any, abm: Any, session: Session, tmp_path: Any) -> None:
    from mdm import create_app

    app = create_app(replace(settings, ade_url=abm.url, push_enabled=False))
    try:
        unit = OrgUnit(kind="unit", name_ja="中央救急隊", name_en="Central Ambulance", code="A1")
        session.add(unit)
        session.commit()
        admin = make_user(session, settings, "ade-admin", "admin")
        session.commit()
        client = app.test_client()
        login(client, admin)

        page = client.get("/console/ade")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "自動デバイス登録" in html and "サーバートークンがありません" in html
        assert english_in(visible_text(html)) == []

        cert = client.post("/console/ade/certificate", data={"csrf_token": csrf_of(page.data)})
        assert cert.status_code == 200 and cert.data.startswith(b"-----BEGIN CERTIFICATE-----")
        pem = tmp_path / "abm.pem"
        pem.write_bytes(cert.data)
        p7m = abm_token(pem, tmp_path / "t.p7m", token_fields(clock.now() + timedelta(days=20)))
        page = client.get("/console/ade")
        with p7m.open("rb") as fh:
            uploaded = client.post(
                "/console/ade/token",
                data={"csrf_token": csrf_of(page.data), "token": (fh, "server_token.p7m")},
                content_type="multipart/form-data",
            )
        assert uploaded.status_code == 302
        refused = client.post(
            "/console/ade/token", data={"csrf_token": csrf_of(page.data)}, content_type="multipart/form-data"
        )
        assert refused.status_code == 400 and "サーバートークン（.p7m）を選んで" in refused.get_data(
            as_text=True
        )

        saved = post_form(
            client,
            f"/console/ade/units/{unit.id}/profile",
            {"department": "情報システム係", "support_phone_number": "03-1234-5678"},
            page="/console/ade",
        )
        assert saved.status_code == 302
        bad = post_form(
            client,
            f"/console/ade/units/{unit.id}/profile",
            {"department": "", "support_phone_number": "call us"},
            page="/console/ade",
        )
        assert bad.status_code == 400 and "電話番号" in bad.get_data(as_text=True)
        rule = post_form(
            client,
            "/console/ade/rules",
            {"kind": "serial", "value": "DMPXK0AAAA01", "org_unit_id": str(unit.id)},
            page="/console/ade",
        )
        assert rule.status_code == 302
        bad_rule = post_form(
            client,
            "/console/ade/rules",
            {"kind": "serial", "value": "x", "org_unit_id": str(unit.id)},
            page="/console/ade",
        )
        assert bad_rule.status_code == 400 and "シリアル番号ではありません" in bad_rule.get_data(as_text=True)

        abm.service.add_device("DMPXK0AAAA01")
        synced = post_form(client, "/console/ade/sync", {}, page="/console/ade")
        assert synced.status_code == 302
        html = client.get("/console/ade").get_data(as_text=True)
        assert "DMPXK0AAAA01" in html and "中央救急隊" in html and "プロファイル割り当て済み" in html
        # Twenty days left: the token warning is on the page, in Japanese.
        assert "ABM サーバートークンは" in html and "残り" in html
        assert english_in(visible_text(html)) == []

        session.rollback()
        session.expire_all()
        assert session.scalars(select(AdeServerToken)).one().active
        assert session.scalars(select(AdeProfile)).one().settings["support_phone_number"] == "03-1234-5678"
        assert session.scalars(select(AdeAssignmentRule)).one().value == "DMPXK0AAAA01"
        assert session.scalars(select(AdeDevice)).one().profile_status == "assigned"
    finally:
        app.extensions["hikeshi"].dispatcher.close()
        app.extensions["hikeshi"].engine.dispose()


def test_a_token_for_another_certificate_is_refused_in_japanese(
    settings: Any, session: Session, tmp_path: Any
) -> None:
    from mdm import create_app
    from tests.support import pki

    app = create_app(replace(settings, push_enabled=False))
    try:
        admin = make_user(session, settings, "ade-admin2", "admin")
        session.commit()
        client = app.test_client()
        login(client, admin)
        page = client.get("/console/ade")
        assert (
            client.post("/console/ade/certificate", data={"csrf_token": csrf_of(page.data)}).status_code
            == 200
        )
        other, _key = pki.make_ca("another server's certificate")
        p7m = abm_token(
            pki.write_pem(tmp_path / "o.pem", other),
            tmp_path / "o.p7m",
            token_fields(clock.now() + timedelta(days=90)),
        )
        with p7m.open("rb") as fh:
            refused = client.post(
                "/console/ade/token",
                data={"csrf_token": csrf_of(page.data), "token": (fh, "server_token.p7m")},
                content_type="multipart/form-data",
            )
        html = refused.get_data(as_text=True)
        assert refused.status_code == 400 and "別の証明書宛て" in html
        assert english_in(visible_text(html)) == []
        session.rollback()
        assert session.scalars(select(AdeServerToken)).first() is None
    finally:
        app.extensions["hikeshi"].dispatcher.close()
        app.extensions["hikeshi"].engine.dispose()
