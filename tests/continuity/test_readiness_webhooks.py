"""Readiness webhooks: queued with each change, posted right after commit, signed like the alert
webhooks, retried with backoff by the scheduler's readiness job, never posted twice."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from mdm.ground.models import DeliveryStatus, ReadinessDelivery, ReadinessEvent
from mdm.roots.scheduler.jobs import JOBS, JobContext
from mdm.services.alerts.signing import SIGNATURE_HEADER, verify_signature
from mdm.services.alerts.webhooks import create_webhook
from mdm.services.continuity import readiness_job
from tests.alerts.receiver import webhook_receiver
from tests.continuity.helpers import ADMIN, build_tree, tablet


def wait_until(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def deliveries(session) -> list[ReadinessDelivery]:
    session.rollback()  # a fresh snapshot: the deliveries are written by the notifier's thread
    session.expire_all()
    return list(session.scalars(select(ReadinessDelivery).order_by(ReadinessDelivery.id)))


def test_posted_after_commit_then_retried_by_the_job(
    app, app_session, session_factory, settings, frozen_clock
):
    session = app_session
    assert JOBS["readiness_recompute"][0] is readiness_job
    with webhook_receiver(statuses=[503]) as receiver:
        _, secret = create_webhook(
            session,
            ADMIN,
            "指令センター",
            receiver.url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        session.commit()
        tree = build_tree(session)
        tablet(session, tree.ambulance3, "救急3 iPad")
        session.commit()  # four units evaluated for the first time: four changes, four deliveries
        events = session.scalars(select(ReadinessEvent).order_by(ReadinessEvent.id)).all()
        assert len(events) == 4
        assert wait_until(lambda: len(receiver.requests) == 4), "not posted right after the commit"
        assert wait_until(lambda: all(d.attempts == 1 for d in deliveries(session)))
        failed = [d for d in deliveries(session) if d.status == DeliveryStatus.PENDING]
        assert len(failed) == 1 and failed[0].last_status_code == 503 and failed[0].last_error == "HTTP 503"

        ctx = JobContext(session_factory, settings, "test")
        assert readiness_job(ctx) == {"changes": 0, "attempted": 0, "delivered": 0}  # not due yet
        frozen_clock.advance(seconds=31)
        assert readiness_job(ctx) == {"changes": 0, "attempted": 1, "delivered": 1}
        assert readiness_job(ctx)["attempted"] == 0  # nothing posted twice

    assert {d.status for d in deliveries(session)} == {DeliveryStatus.DELIVERED}
    assert len(receiver.requests) == 5
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert sorted({b["event_id"] for b in bodies}) == [e.id for e in events]
    for request in receiver.requests:
        assert verify_signature(secret.encode(), request.body, request.headers[SIGNATURE_HEADER])
        assert request.headers["X-Hikeshi-Event"] == "readiness.changed"
        assert request.headers["X-Hikeshi-Delivery"].startswith("readiness-")
    by_id = {e.id: e for e in events}
    for body in bodies:
        assert body == by_id[body["event_id"]].payload  # the webhook body is the published event
