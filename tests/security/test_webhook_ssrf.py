"""Webhooks cannot be aimed at internal addresses (loopback, link-local metadata, private,
multicast, reserved) unless an administrator allow-lists the network; the address is checked
again at every delivery on what the name resolves to then; and a captured delivery cannot be
replayed later (the signed timestamp)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from mdm.ground.audit import SYSTEM
from mdm.ground.models import DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery
from mdm.roots.scheduler.jobs import JobContext, webhook_delivery
from mdm.services.alerts.destinations import allowed_networks
from mdm.services.alerts.service import raise_alert
from mdm.services.alerts.signing import SIGNATURE_HEADER, verify_signature
from mdm.services.alerts.webhooks import WebhookError, create_webhook
from tests.alerts.receiver import webhook_receiver

LOOPBACK = ("127.0.0.0/8", "::1/128")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:5432/", "loopback"),
        ("http://localhost:6379/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.5/", "private"),
        ("http://172.16.3.4/", "private"),
        ("https://192.168.1.1/", "private"),
        ("http://[fd00::1]/", "private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "public"),
    ],
)
def test_internal_addresses_are_refused_without_an_allow_list(
    session: Any, settings: Any, url: str, kind: str
) -> None:
    with pytest.raises(WebhookError) as refused:
        create_webhook(session, SYSTEM, "evil", url, secret_key=settings.secret_key, allow_networks=())
    assert refused.value.field == "url"
    assert kind in str(refused.value) and "HIKESHI_WEBHOOK_ALLOW_NETWORKS" in str(refused.value)
    assert session.query(Webhook).count() == 0


def test_an_allow_listed_network_and_public_addresses_are_accepted(session: Any, settings: Any) -> None:
    hook, _ = create_webhook(
        session, SYSTEM, "lab", "http://127.0.0.1:9/", secret_key=settings.secret_key, allow_networks=LOOPBACK
    )
    public, _ = create_webhook(
        session, SYSTEM, "dispatch", "https://8.8.8.8/hook", secret_key=settings.secret_key, allow_networks=()
    )
    assert hook.id and public.id
    with pytest.raises(ValueError, match="HIKESHI_WEBHOOK_ALLOW_NETWORKS"):
        allowed_networks(["not-a-network"])


def test_the_address_is_checked_again_at_delivery(
    session: Any, session_factory: Any, settings: Any, frozen_clock: Any
) -> None:
    """Created while loopback was allowed (or while the name pointed elsewhere); at delivery the
    name resolves to loopback and the allow-list no longer covers it: nothing is sent."""
    with webhook_receiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        create_webhook(
            session, SYSTEM, "rebound", url, secret_key=settings.secret_key, allow_networks=LOOPBACK
        )
        raise_alert(session, "x", "critical", "an alert")
        session.commit()
        strict = replace(settings, webhook_allow_networks=())
        assert webhook_delivery(JobContext(session_factory, strict, "t")) == {"attempted": 1, "delivered": 0}
        assert receiver.requests == []
        session.expire_all()
        [attempt] = session.query(WebhookAttempt).all()
        assert attempt.status_code is None
        assert attempt.error.startswith("refused: localhost → ") and "loopback" in attempt.error
        # Allowed again: delivered to the checked address, with the name in the Host header.
        frozen_clock.advance(minutes=5)
        assert webhook_delivery(JobContext(session_factory, settings, "t"))["delivered"] == 1
    [request] = receiver.requests
    assert request.headers["Host"] == url.split("/")[2]
    session.rollback()  # a fresh read
    assert session.query(WebhookDelivery).one().status == DeliveryStatus.DELIVERED


def test_a_captured_delivery_cannot_be_replayed_later(
    session: Any, session_factory: Any, settings: Any, frozen_clock: Any
) -> None:
    with webhook_receiver() as receiver:
        _, secret = create_webhook(
            session, SYSTEM, "dispatch", receiver.url, secret_key=settings.secret_key, allow_networks=LOOPBACK
        )
        raise_alert(session, "device.lost_mode", "critical", "lost")
        session.commit()
        webhook_delivery(JobContext(session_factory, settings, "t"))
    [request] = receiver.requests
    header = request.headers[SIGNATURE_HEADER]
    assert header.startswith(f"t={int(frozen_clock.current.timestamp())},v1=")
    assert verify_signature(secret.encode(), request.body, header)
    # The same bytes with another body, or the same delivery replayed six minutes later: refused.
    forged = json.dumps({**json.loads(request.body), "title": "forged"}).encode()
    assert not verify_signature(secret.encode(), forged, header)
    frozen_clock.advance(minutes=6)
    assert not verify_signature(secret.encode(), request.body, header)


def test_webhook_api_create_list_test_disable_log_with_rbac_and_audit(
    app: Any, session_factory: Any, settings: Any
) -> None:
    from mdm.ground.models import AuditEvent
    from tests.web.helpers import bearer, make_token

    with session_factory() as s:
        admin = bearer(make_token(s, "admin"))
        operator = bearer(make_token(s, "operator"))
    client = app.test_client()
    assert client.get("/api/v1/webhooks", headers=operator).status_code == 403
    metadata = client.post(
        "/api/v1/webhooks", json={"name": "meta", "url": "http://169.254.169.254/"}, headers=admin
    )
    assert metadata.status_code == 400 and "url" in metadata.get_json()["error"]["fields"]
    with webhook_receiver() as receiver:
        created = client.post("/api/v1/webhooks", json={"name": "指令", "url": receiver.url}, headers=admin)
        assert created.status_code == 201, created.data
        hook = created.get_json()
        assert len(hook["secret"]) > 30
        listed = client.get("/api/v1/webhooks", headers=admin).get_json()["items"]
        assert [h["name"] for h in listed] == ["指令"] and "secret" not in listed[0]
        sent = client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=admin).get_json()
        assert sent["ok"] and sent["status_code"] == 200
    [request] = receiver.requests
    assert request.headers["X-Hikeshi-Event"] == "webhook.test"
    assert verify_signature(hook["secret"].encode(), request.body, request.headers[SIGNATURE_HEADER])
    with session_factory() as s:
        raise_alert(s, "x", "critical", "queued for the webhook")
        s.commit()
    disabled = client.post(f"/api/v1/webhooks/{hook['id']}/disable", headers=admin).get_json()
    assert disabled["enabled"] is False
    log = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=admin).get_json()["items"]
    assert [d["status"] for d in log] == ["pending"]
    assert client.get("/api/v1/webhooks/99999999999/deliveries", headers=admin).status_code == 404
    with session_factory() as s:
        actions = [e.action for e in s.query(AuditEvent).filter(AuditEvent.target_type == "webhook")]
    assert actions == ["webhook.created", "webhook.test_sent", "webhook.disabled"]


def test_webhook_cli_refuses_internal_urls_and_manages_webhooks(
    session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    from click.testing import CliRunner

    from mdm.roots.cli import main

    monkeypatch.setenv("HIKESHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("HIKESHI_SECRET_KEY", settings.secret_key)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    refused = cli("webhook", "create", "db", "http://127.0.0.1:5432/")
    assert refused.exit_code == 1 and "loopback" in refused.output
    with webhook_receiver() as receiver:
        monkeypatch.setenv("HIKESHI_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
        created = cli("webhook", "create", "lab", receiver.url)
        assert created.exit_code == 0 and "signing secret (shown only now): " in created.output
        secret = created.output.split("signing secret (shown only now): ")[1].split()[0]
        hook_id = created.output.split("#")[1].split()[0]
        tested = cli("webhook", "test", hook_id)
        assert tested.exit_code == 0 and "answered HTTP 200" in tested.output
    [request] = receiver.requests
    assert verify_signature(secret.encode(), request.body, request.headers[SIGNATURE_HEADER])
    assert cli("webhook", "disable", hook_id).exit_code == 0
    assert "disabled" in cli("webhook", "list").output


def test_webhook_console_page_creates_refuses_tests_and_disables(
    app: Any, session_factory: Any, settings: Any
) -> None:
    from tests.web.helpers import login, make_user, post_form

    with session_factory() as s:
        admin = make_user(s, settings, "it-admin", "admin")
        auditor = make_user(s, settings, "auditor-1", "auditor")
    client = app.test_client()
    login(client, admin)
    refused = post_form(client, "/console/webhooks", {"name": "meta", "url": "http://169.254.169.254/"})
    assert refused.status_code == 400 and "link-local" in refused.get_data(as_text=True)
    with webhook_receiver() as receiver:
        created = post_form(client, "/console/webhooks", {"name": "指令", "url": receiver.url})
        page = created.get_data(as_text=True)
        assert "署名用の秘密鍵は今だけ表示されます" in page and 'id="webhook-table"' in page
        with session_factory() as s:
            hook_id = s.query(Webhook).one().id
        tested = post_form(client, f"/console/webhooks/{hook_id}/test", {}, page="/console/webhooks")
        assert tested.status_code == 302
    assert len(receiver.requests) == 1
    assert (
        post_form(client, f"/console/webhooks/{hook_id}/disable", {}, page="/console/webhooks").status_code
        == 302
    )
    with session_factory() as s:
        assert s.get(Webhook, hook_id).enabled is False
    reader = app.test_client()
    login(reader, auditor)
    # The auditor reads (settings.read) but cannot change anything.
    listed = reader.get("/console/webhooks")
    assert listed.status_code == 200 and 'id="webhook-form"' not in listed.get_data(as_text=True)
    assert reader.post(f"/console/webhooks/{hook_id}/enable").status_code in (400, 403)
