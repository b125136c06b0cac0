"""An APNs outage longer than the threshold raises an alert through the normal channels (here a
real webhook receiver); when APNs answers again the alert is closed and the end announced."""

from __future__ import annotations

import json

from sqlalchemy import select

from commands.queue import enqueue_command
from mdm.ground.db import transaction
from mdm.ground.health import service_health
from mdm.ground.models import Alert, Device
from mdm.ground.push.breaker import CircuitBreaker
from mdm.roots.scheduler.jobs import JobContext, run_job, webhook_delivery
from mdm.services.alerts.webhooks import create_webhook
from tests.alerts.receiver import webhook_receiver
from tests.faults.harness import ADMIN, enroll_ipads, wait_for


def test_an_apns_outage_past_the_threshold_alerts_and_its_end_closes_it(
    pushing_app, device_ca, apns_server, session_factory, moving_clock
):  # type: ignore[no-untyped-def]
    ext = pushing_app.extensions["hikeshi"]
    [ipad] = enroll_ipads(pushing_app, device_ca, pushing_app.topic, 1)
    ctx = JobContext(ext.session_factory, ext.settings, "test:1", ext.dispatcher)
    # A quick breaker, so a retry is allowed a second after the outage ends (default: minutes).
    ext.dispatcher.breaker = CircuitBreaker(threshold=1, base_cooldown=0.5, max_cooldown=1.0)
    with webhook_receiver() as receiver:
        with transaction(ext.session_factory) as s:
            create_webhook(
                s,
                ADMIN,
                "dispatch",
                receiver.url,
                secret_key=ext.settings.secret_key,
                allow_networks=ext.settings.webhook_allow_networks,
            )

        apns_server.set_outage(503)
        with transaction(ext.session_factory) as s:
            enqueue_command(s, s.scalars(select(Device)).one(), "SecurityInfo", {}, actor=ADMIN)
        assert ext.dispatcher.wait_idle(30)
        with session_factory() as s:
            health = service_health(s, "apns")
            assert health is not None and not health.healthy and health.detail == "503 ServiceUnavailable"

        moving_clock.advance(minutes=ext.settings.apns_outage_alert_minutes - 1)
        assert run_job(ctx, "push_outbox").details["apns_outage_alert"] is None  # not long enough yet
        moving_clock.advance(minutes=2)
        assert run_job(ctx, "push_outbox").details["apns_outage_alert"] == "raised"
        assert run_job(ctx, "push_outbox").details["apns_outage_alert"] is None  # once per outage
        assert webhook_delivery(ctx) == {"attempted": 1, "delivered": 1}
        raised = json.loads(receiver.requests[-1].body)
        assert raised["kind"] == "apns.outage" and raised["severity"] == "critical"
        assert raised["title"].startswith("APNs unreachable for 11 minutes")

        apns_server.set_outage(None)

        # The waiting wake-up goes through (drained by this job or the dispatcher's own timer);
        # the job then sees the committed health and closes the alert.
        def closed() -> bool:
            moving_clock.advance(seconds=30)  # this test's clock only moves when told to
            return run_job(ctx, "push_outbox").details["apns_outage_alert"] == "closed"

        wait_for(closed, 30, "the alert to close", every=0.5)
        assert apns_server.pushes_to(ipad.token_hex)[-1].status == 200
        assert webhook_delivery(ctx) == {"attempted": 1, "delivered": 1}
        ended = json.loads(receiver.requests[-1].body)
        assert ended["kind"] == "apns.recovered" and ended["details"]["outage_alert_id"] == raised["alert_id"]
    with session_factory() as s:
        outage = s.get(Alert, raised["alert_id"])
        assert outage.acknowledged_by == "system" and "ended_at" in outage.details
        assert service_health(s, "apns").healthy
