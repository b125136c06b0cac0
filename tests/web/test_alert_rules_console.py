"""The alert rules page (issue #19 item 8): the fleet default compliance policy edited in the
console (audited, refused to scoped administrators, bad input answered 400 naming the field), every
unit's own and effective values, and where alerts go."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mdm.ground.audit import SYSTEM
from mdm.ground.models import AuditEvent, CompliancePolicy
from mdm.services.unit_policy import set_unit_policy
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import csrf_of, login, make_user, post_form

PAGE = "/console/alert-rules"


def _client(app: Any, account: Any) -> Any:
    client = app.test_client()
    login(client, account)
    return client


def test_fleet_default_and_per_unit_rules(app, tree, session_factory, settings):  # noqa: F811
    with session_factory() as session:
        set_unit_policy(session, SYSTEM, tree.unit_a1.id, minimum_os_version="17.4")
        session.commit()
        admin = make_user(session, settings, "rules-admin", "admin")
        local = make_user(session, settings, "rules-local", "admin", org_unit_id=tree.station_a.id)
        operator = make_user(session, settings, "rules-op", "operator")
    client = _client(app, admin)
    assert 'id="alert-rules-link"' in client.get("/console/alerts").get_data(as_text=True)
    page = client.get(PAGE).get_data(as_text=True)
    assert "メール: 停止中" in page and "Webhook: 0件が有効" in page
    assert "<strong>17.4</strong>" in page  # 中央救急隊's own value, in bold

    refused = post_form(
        client, PAGE + "/default", {"offline_limit_hours": "0", "minimum_os_version": "x"}, page=PAGE
    )
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "1〜8760 の整数" in text and "17.4 や 17.4.1" in text
    saved = post_form(
        client, PAGE + "/default", {"offline_limit_hours": "48", "require_supervision": "yes"}, page=PAGE
    )
    assert saved.status_code == 302
    after = client.get(PAGE).get_data(as_text=True)
    assert "全体の既定値を保存しました" in after and 'value="48"' in after
    with session_factory() as session:
        row = session.scalars(select(CompliancePolicy).where(CompliancePolicy.org_unit_id.is_(None))).one()
        assert (row.offline_limit_hours, row.require_supervision) == (48, True)
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "compliance.policy_changed")
            .order_by(AuditEvent.seq.desc())
        ).first()
        assert event.details == {"offline_limit_hours": 48, "require_supervision": True}

    # A station's administrator sees its units and the default, and cannot change the default.
    scoped = _client(app, local)
    scoped_page = scoped.get(PAGE).get_data(as_text=True)
    assert f'id="unit-rule-{tree.unit_a1.id}"' in scoped_page
    assert (
        f'id="unit-rule-{tree.station_b.id}"' not in scoped_page
        and 'id="fleet-default-form"' not in scoped_page
    )
    denied = scoped.post(
        PAGE + "/default", data={"offline_limit_hours": "1", "csrf_token": csrf_of(scoped_page)}
    )
    assert denied.status_code == 403
    reader = _client(app, operator)
    assert reader.get(PAGE).status_code == 200
    assert (
        reader.post(PAGE + "/default", data={"csrf_token": csrf_of(reader.get(PAGE).data)}).status_code == 403
    )
