"""Webhooks in the console (issue #19 item 8): create, test-send, disable, and the delivery log with
every attempt, through a real HTTP receiver and the real delivery job; scoped administrators may
read but not manage webhooks (a webhook carries every unit's alerts)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from mdm.ground.models import AuditEvent, Webhook
from mdm.roots.scheduler.jobs import JobContext, webhook_delivery
from mdm.services.alerts.service import raise_alert
from tests.alerts.receiver import webhook_receiver
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import csrf_of, login, make_user, post_form


def _client(app: Any, account: Any) -> Any:
    client = app.test_client()
    login(client, account)
    return client


def test_create_test_send_deliver_log_and_disable(app, tree, session_factory, settings):  # noqa: F811
    with session_factory() as session:
        admin = make_user(session, settings, "it-admin19", "admin")
        local = make_user(session, settings, "local-admin19", "admin", org_unit_id=tree.station_b.id)
    client = _client(app, admin)
    missing = post_form(client, "/console/webhooks", {"name": "", "url": ""})
    assert missing.status_code == 400
    with webhook_receiver() as receiver:
        created = post_form(client, "/console/webhooks", {"name": "指令センター", "url": receiver.url})
        assert created.status_code == 200 and "署名用の秘密鍵" in created.get_data(as_text=True)
        with session_factory() as session:
            hook_id = session.scalars(select(Webhook.id)).one()
        log_path = f"/console/webhooks/{hook_id}/deliveries"
        tested = post_form(client, f"/console/webhooks/{hook_id}/test", {"back": log_path}, page=log_path)
        assert tested.status_code == 302 and tested.headers["Location"].endswith(log_path)
        with session_factory() as session:
            raise_alert(
                session,
                "wipe_requested",
                "critical",
                "消去の承認待ち: 救急1 iPad",
                device=None,
                org_unit_id=tree.unit_a1.id,
            )
            session.commit()
        assert webhook_delivery(JobContext(session_factory, settings, "t"))["delivered"] == 1
    assert len(receiver.requests) == 2  # the test and the alert
    page = client.get(log_path).get_data(as_text=True)
    row = re.search(r'<tr id="delivery-\d+" data-status="delivered">.*?</tr>', page, re.S)
    assert row and "消去の承認待ち: 救急1 iPad" in row.group(0) and "HTTP 200" in row.group(0)
    assert "配信済み" in row.group(0)
    tests = re.search(r'id="test-log".*?</table>', page, re.S)
    assert tests and "it-admin19" in tests.group(0) and "HTTP 200" in tests.group(0)

    # Disabled from the log page, back on the log page, saying what it means.
    off = post_form(client, f"/console/webhooks/{hook_id}/disable", {"back": log_path}, page=log_path)
    assert off.status_code == 302
    assert "無効にしました" in client.get(off.headers["Location"]).get_data(as_text=True)

    # A station's administrator reads the log of its own units only and manages nothing.
    scoped = _client(app, local)
    listing = scoped.get("/console/webhooks").get_data(as_text=True)
    assert 'id="webhook-form"' not in listing and f'id="webhook-test-{hook_id}"' not in listing
    scoped_log = scoped.get(log_path).get_data(as_text=True)
    assert "救急1 iPad" not in scoped_log
    assert (
        scoped.post(f"/console/webhooks/{hook_id}/enable", data={"csrf_token": csrf_of(listing)}).status_code
        == 403
    )
    assert (
        scoped.post(
            "/console/webhooks", data={"name": "x", "url": "https://8.8.8.8/", "csrf_token": csrf_of(listing)}
        ).status_code
        == 403
    )
    assert client.get("/console/webhooks/999999/deliveries").status_code == 404
    with session_factory() as session:
        actions = [
            e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.target_type == "webhook"))
        ]
    assert actions == ["webhook.created", "webhook.test_sent", "webhook.disabled"]
