"""The scheduler's os_updates job, run as the scheduler runs it: it announces the changed
declarations once, and re-checks the deadline rule (a deadline passes without any device
saying anything)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import ComplianceFinding
from mdm.roots.scheduler.jobs import JOBS, JobContext, run_job
from mdm.services.osupdates.policy import set_update_policy
from tests.protocol.test_apple_loop import _enroll, _skip_first_inventory, fresh

ADMIN = Actor("user:admin", "admin", user_id=1)


def test_the_job_converges_and_flags_overdue_tablets(app, client, ipad, session, settings):
    assert "os_updates" in JOBS
    _enroll(client, ipad)
    _skip_first_inventory(session)
    factory = app.extensions["hikeshi"].session_factory  # the wired factory, as the scheduler's
    with factory() as s:
        set_update_policy(s, ADMIN, None, target="18.1", deadline=clock.now() - timedelta(minutes=5))
        s.commit()
    ctx = JobContext(factory, replace(settings, push_enabled=False), "host:1")
    first = run_job(ctx, "os_updates")
    assert first.outcome == "ok", first.details
    assert first.details["queued"] == {"DeclarativeManagement": 1} and first.details["devices"] == 1
    assert run_job(ctx, "os_updates").details["queued"] == {}
    fresh(session)
    [finding] = session.scalars(
        select(ComplianceFinding).where(ComplianceFinding.rule == "os_update_overdue")
    )
    assert finding.details["target"] == "18.1" and finding.closed_at is None
