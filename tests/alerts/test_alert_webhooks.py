"""Alerts stored and acknowledged; webhook deliveries signed with HMAC-SHA256 over the body,
retried with backoff, every attempt recorded; a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace

import pytest
from sqlalchemy import select

from mdm.ground.models import AuditEvent, DeliveryStatus, WebhookDelivery
from mdm.roots.scheduler.jobs import JobContext, webhook_delivery
from mdm.services.alerts.service import AlertStateError, acknowledge_alert, open_alert_count, raise_alert
from mdm.services.alerts.signing import SIGNATURE_HEADER, verify_signature
from mdm.services.alerts.webhooks import WebhookError, create_webhook, deliveries_of_alert, retry_delay
from tests.alerts.receiver import webhook_receiver
from tests.inventory.helpers import ADMIN
from tests.support.factories import make_device


def _job(session_factory, settings) -> JobContext:
    return JobContext(session_factory, settings, "test")


def test_delivery_is_signed_and_recorded(session, session_factory, settings, frozen_clock):
    with webhook_receiver() as receiver:
        _, secret = create_webhook(
            session,
            ADMIN,
            "dispatch",
            receiver.url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        device = make_device(session)
        alert = raise_alert(
            session, "device.lost_mode", "critical", "救急1隊のiPadが紛失モード", device=device
        )
        session.commit()
        assert webhook_delivery(_job(session_factory, settings)) == {"attempted": 1, "delivered": 1}
    [request] = receiver.requests
    # t=<sending time>,v1=HMAC(secret, "<t>." + body): the timestamp is signed with the body.
    sent_at = int(frozen_clock.current.timestamp())
    mac = hmac.new(secret.encode(), f"{sent_at}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"t={sent_at},v1={mac}"
    assert verify_signature(secret.encode(), request.body, request.headers[SIGNATURE_HEADER])
    assert not verify_signature(b"wrong", request.body, request.headers[SIGNATURE_HEADER])
    payload = json.loads(request.body)
    assert payload["alert_id"] == alert.id and payload["device"]["udid"] == device.udid
    assert (
        payload["title"] == "救急1隊のiPadが紛失モード"
        and request.headers["X-Hikeshi-Event"] == "device.lost_mode"
    )
    session.expire_all()
    [delivery] = deliveries_of_alert(session, alert.id)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
    assert [a.status_code for a in delivery.attempt_log] == [200]


def test_failures_retry_with_backoff_then_give_up(session, session_factory, settings, frozen_clock):
    settings = replace(settings, webhook_max_attempts=3)
    with webhook_receiver(statuses=[500, 503, 500, 500]) as receiver:
        create_webhook(
            session,
            ADMIN,
            "flaky",
            receiver.url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        raise_alert(session, "test", "warning", "retry me")
        session.commit()
        ctx = _job(session_factory, settings)
        assert webhook_delivery(ctx)["attempted"] == 1
        assert webhook_delivery(ctx)["attempted"] == 0  # not due yet
        frozen_clock.advance(seconds=30)
        assert webhook_delivery(ctx)["attempted"] == 1
        frozen_clock.advance(seconds=59)
        assert webhook_delivery(ctx)["attempted"] == 0
        frozen_clock.advance(seconds=1)
        assert webhook_delivery(ctx)["attempted"] == 1
        frozen_clock.advance(hours=2)
        assert webhook_delivery(ctx)["attempted"] == 0  # gave up after 3
    assert len(receiver.requests) == 3
    # Every attempt signs the same body.
    assert len({r.body for r in receiver.requests}) == 1
    session.expire_all()
    delivery = session.scalars(select(WebhookDelivery)).one()
    assert delivery.status == DeliveryStatus.FAILED and delivery.last_error == "HTTP 500"
    assert [a.status_code for a in delivery.attempt_log] == [500, 503, 500]


def test_unreachable_webhook_is_an_attempt_with_an_error(session, session_factory, settings, frozen_clock):
    with webhook_receiver() as receiver:
        url = receiver.url
    create_webhook(
        session,
        ADMIN,
        "gone",
        url,
        secret_key=settings.secret_key,
        allow_networks=settings.webhook_allow_networks,
    )
    raise_alert(session, "test", "warning", "nobody listens")
    session.commit()
    webhook_delivery(_job(session_factory, settings))
    session.expire_all()
    delivery = session.scalars(select(WebhookDelivery)).one()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.attempt_log[0].status_code is None and "ConnectError" in delivery.attempt_log[0].error
    assert delivery.next_attempt_at == frozen_clock.current + retry_delay(1)


def test_backoff_doubles_up_to_an_hour():
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(30).total_seconds() == 3600


def test_webhook_validation_names_the_field(session, settings):
    with pytest.raises(WebhookError) as bad_url:
        create_webhook(
            session,
            ADMIN,
            "x",
            "ftp://example.org",
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
    assert bad_url.value.field == "url"
    with pytest.raises(WebhookError) as no_name:
        create_webhook(
            session,
            ADMIN,
            " ",
            "https://example.org",
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
    assert no_name.value.field == "name"


def test_acknowledge_with_comment(session):
    alert = raise_alert(session, "test", "warning", "look at me")
    assert open_alert_count(session) == 1
    acknowledge_alert(session, alert, ADMIN, "  確認済み、署で回収  ")
    assert (alert.acknowledged_by, alert.acknowledge_comment) == ("admin@hq", "確認済み、署で回収")
    assert open_alert_count(session) == 0
    with pytest.raises(AlertStateError):
        acknowledge_alert(session, alert, ADMIN)
    assert session.scalars(select(AuditEvent.action)).all() == ["alert.acknowledged"]


def test_disabled_webhook_gets_nothing_until_enabled(session, session_factory, settings, frozen_clock):
    from mdm.services.alerts.webhooks import list_webhooks, set_webhook_enabled

    with webhook_receiver() as receiver:
        hook, _ = create_webhook(
            session,
            ADMIN,
            "dispatch",
            receiver.url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        raise_alert(session, "test", "warning", "while enabled")
        set_webhook_enabled(session, ADMIN, hook, False)
        raise_alert(session, "test", "warning", "while disabled")
        session.commit()
        ctx = _job(session_factory, settings)
        assert webhook_delivery(ctx)["attempted"] == 0
        set_webhook_enabled(session, ADMIN, hook, True)
        session.commit()
        assert webhook_delivery(ctx) == {"attempted": 1, "delivered": 1}
    assert [json.loads(r.body)["title"] for r in receiver.requests] == ["while enabled"]
    assert [w.name for w in list_webhooks(session)] == ["dispatch"]
