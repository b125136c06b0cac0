"""The jobs themselves, run as the scheduler runs them (own transactions, a JobRun row each)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from mdm.ground.models import (
    Alert,
    AmapiNotification,
    Command,
    CommandResult,
    ComplianceFinding,
    DeviceCertificate,
    InventoryChange,
    JobRun,
    PushCertificate,
    ReadinessEvent,
)
from mdm.roots.scheduler import jobs
from mdm.roots.scheduler.jobs import JobContext, run_job
from mdm.roots.scheduler.retention import RetentionDays, purge_expired
from mdm.services.alerts.service import raise_alert
from mdm.services.compliance.evaluation import open_findings
from tests.inventory.helpers import answer, apps
from tests.support.factories import make_device


def _ctx(session_factory, settings) -> JobContext:
    return JobContext(session_factory, settings, "host:1")


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_inventory_refresh_job_queues_due_devices_once(session, session_factory, settings, frozen_clock):
    make_device(session)
    session.commit()
    run = run_job(_ctx(session_factory, settings), "inventory_refresh")
    assert (run.outcome, run.details, run.holder) == ("ok", {"devices": 1}, "host:1")
    assert run_job(_ctx(session_factory, settings), "inventory_refresh").details == {"devices": 0}
    session.expire_all()
    assert _count(session, Command) == 5


def test_offline_and_certificate_jobs(session, session_factory, settings, frozen_clock):
    device = make_device(session)
    device.last_seen_at = frozen_clock.current
    session.add(
        DeviceCertificate(
            fingerprint_sha256="ab" * 32,
            device_id=device.id,
            subject="CN=ipad",
            issuer="CN=ca",
            serial_hex="1",
            not_before=frozen_clock.current - timedelta(days=300),
            not_after=frozen_clock.current + timedelta(days=10),
            pem="-",
            purpose="mdm_identity",
        )
    )
    session.add(
        PushCertificate(
            topic="com.apple.mgmt.External.x",
            subject="CN=APSP",
            fingerprint_sha256="cd" * 32,
            not_before=frozen_clock.current - timedelta(days=300),
            not_after=frozen_clock.current + timedelta(days=20),
            cert_pem="-",
            key_encrypted=b"-",
            imported_by="admin",
        )
    )
    session.commit()
    frozen_clock.advance(hours=25)
    ctx = _ctx(session_factory, settings)
    assert run_job(ctx, "offline_check").details == {"devices": 1}
    details = run_job(ctx, "certificate_expiry").details
    assert details == {"devices": 1, "push_certificate_alert": True}
    assert run_job(ctx, "certificate_expiry").details["push_certificate_alert"] is False  # once, not daily
    session.expire_all()
    assert {f.rule for f in open_findings(session, device.id)} == {
        "offline_too_long",
        "identity_certificate_expiring",
    }
    kinds = sorted(session.scalars(select(Alert.kind)))
    assert kinds == [
        "compliance.identity_certificate_expiring",
        "compliance.offline_too_long",
        "push_certificate.expiring",
    ]


def test_a_failing_job_is_recorded_and_does_not_raise(session_factory, settings, monkeypatch):
    # Replace only the job body (outside Hikeshi's services): run_job must survive it.
    def explode(ctx):
        raise RuntimeError("database went away")

    monkeypatch.setitem(jobs.JOBS, "offline_check", (explode, 15))
    run = run_job(_ctx(session_factory, settings), "offline_check")
    assert run.outcome == "failed" and "database went away" in run.details["error"]


def test_retention_purges_only_what_is_old(session, frozen_clock):
    device = make_device(session)
    answer(session, device, "InstalledApplicationList", apps(("a.b", "A", "1")))
    answer(session, device, "InstalledApplicationList", apps(("c.d", "C", "1")))
    raise_alert(session, "old", "warning", "old alert")
    session.add(
        ReadinessEvent(state="degraded", cause_code="old", cause_ja="古い", cause_en="old", payload={})
    )
    session.flush()
    frozen_clock.advance(days=100)
    answer(session, device, "InstalledApplicationList", apps(("e.f", "E", "1")))
    raise_alert(session, "new", "warning", "new alert")
    session.add(JobRun(job="x", holder="h", started_at=frozen_clock.current - timedelta(days=200)))
    # AMAPI notifications: past the 30 days, but one still within a subscription's 31-day retention
    # (its message id must still meet a redelivery).
    for days, message in ((40, "old"), (30.5, "redeliverable"), (1, "new")):
        session.add(
            AmapiNotification(
                message_id=message,
                notification_type="STATUS_REPORT",
                received_at=frozen_clock.current - timedelta(days=days),
                outcome="applied",
            )
        )
    session.flush()
    before = (_count(session, InventoryChange), _count(session, CommandResult), _count(session, Alert))
    counts = purge_expired(
        session, RetentionDays(inventory_history=30, command_results=30, alerts=30, job_runs=90)
    )
    assert counts["inventory_changes"] == 2 and counts["command_results"] == 2 and counts["alerts"] == 1
    assert counts["job_runs"] == 1 and counts["readiness_events"] == 1
    assert counts["amapi_notifications"] == 1
    assert sorted(session.scalars(select(AmapiNotification.message_id))) == ["new", "redeliverable"]
    after = (_count(session, InventoryChange), _count(session, CommandResult), _count(session, Alert))
    assert after == (before[0] - 2, before[1] - 2, before[2] - 1)
    assert session.scalars(select(Alert.kind).where(Alert.kind.in_(["old", "new"]))).all() == ["new"]
    # Zero keeps everything.
    frozen_clock.advance(days=1000)
    assert purge_expired(session, RetentionDays(0, 0, 0, 0)) == {}
    # The device's open finding (offline since enrollment) stays whatever its age.
    assert [f.rule for f in session.scalars(select(ComplianceFinding))] == ["offline_too_long"]


def test_scheduler_refuses_a_database_behind_its_migrations(tmp_path):
    from click.testing import CliRunner

    from mdm.roots.cli import main

    env = {
        "HIKESHI_DATABASE_URL": f"sqlite:///{tmp_path / 'blank.db'}",
        "HIKESHI_INSTANCE_PATH": str(tmp_path / "instance"),
        "HIKESHI_SECRET_KEY": "k",
    }
    result = CliRunner().invoke(main, ["scheduler"], env=env)
    assert result.exit_code == 1 and "migration" in result.output.lower()
