"""Housekeeping jobs of other services, run as the scheduler runs them: each does its work once
when run twice in a row, and records a JobRun."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

import commands.incidents as hotline
from mdm.ground import ca as ca_service
from mdm.ground.audit import Actor, record_event, verify_chain
from mdm.ground.db import transaction
from mdm.ground.models import Alert, AuditEvent, Command, EnrollmentChallenge, IncidentStatus
from mdm.ground.models.incident import Incident
from mdm.roots.scheduler.jobs import JOBS, JobContext, run_job
from mdm.services import orgunits
from mdm.services.devices import certificate_row_for
from tests.support.factories import make_device

ADMIN = Actor("admin-suzuki", "admin", "192.0.2.12")
OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "lost_place": "中央区役所前", "kind": "lost"}


def _ctx(session_factory, settings, **changes) -> JobContext:
    return JobContext(session_factory, replace(settings, push_enabled=False, **changes), "host:1")


def _fresh(session):
    session.rollback()
    session.expire_all()
    return session


def test_the_housekeeping_jobs_are_registered():
    for name in ("identity_renewal", "enrollment_challenge_purge", "audit_purge", "incident_auto_wipe"):
        assert name in JOBS


def test_identity_renewal_job_queues_once(session, session_factory, settings, frozen_clock):
    ctx = _ctx(session_factory, settings)
    with transaction(session_factory) as s:
        ca_service.ensure_ca(s, ctx.settings)
    with session_factory() as s:
        ca = ca_service.device_ca(s, ctx.settings)
    device = make_device(session)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    row = certificate_row_for(
        ca_service.issue_device_identity(ca, key.public_key(), "ipad", days=365), purpose="mdm_identity"
    )
    row.device_id = device.id
    session.add(row)
    session.commit()
    assert run_job(ctx, "identity_renewal").details == {"queued": 0}  # a year left
    frozen_clock.advance(days=340)
    run = run_job(ctx, "identity_renewal")
    assert (run.outcome, run.details) == ("ok", {"queued": 1})
    assert run_job(ctx, "identity_renewal").details == {"queued": 0}  # one is pending already
    [command] = _fresh(session).scalars(select(Command).where(Command.device_id == device.id)).all()
    assert command.request_type == "InstallProfile"


def test_stale_enrollment_challenges_are_purged_once(session, session_factory, settings, frozen_clock):
    now = frozen_clock.current

    def challenge(expires_ago_days: int, used: bool = False) -> None:
        session.add(
            EnrollmentChallenge(
                challenge_hash=secrets.token_hex(32),
                purpose="enroll",
                created_at=now - timedelta(days=expires_ago_days + 1),
                expires_at=now - timedelta(days=expires_ago_days),
                used_at=now if used else None,
            )
        )

    challenge(40)
    challenge(40, used=True)  # token uses point at used ones: they stay
    challenge(2)
    session.commit()
    ctx = _ctx(session_factory, settings)
    assert run_job(ctx, "enrollment_challenge_purge").details == {"challenges": 1}
    assert run_job(ctx, "enrollment_challenge_purge").details == {"challenges": 0}
    assert _fresh(session).scalar(select(func.count()).select_from(EnrollmentChallenge)) == 2


def test_audit_purge_job_keeps_the_retention_and_the_chain(session, session_factory, settings, frozen_clock):
    for n in range(3):
        record_event(session, ADMIN, "test.old", "test", n, {})
    session.commit()
    frozen_clock.advance(days=40)
    record_event(session, ADMIN, "test.recent", "test", 9, {})
    session.commit()
    assert run_job(_ctx(session_factory, settings, audit_retention_days=0), "audit_purge").details == {
        "enabled": False
    }
    ctx = _ctx(session_factory, settings, audit_retention_days=30)
    assert run_job(ctx, "audit_purge").details == {"enabled": True, "purged_events": 3}
    assert run_job(ctx, "audit_purge").details == {"enabled": True, "purged_events": 0}
    _fresh(session)
    assert verify_chain(session).ok
    actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["test.recent", "audit.purge"]


def test_auto_wipe_job_reminds_then_wipes_with_alerts(session, session_factory, settings, frozen_clock):
    hq = orgunits.create_unit(session, {"kind": "hq", "name_ja": "消防本部", "code": "HQ"}, actor=ADMIN)
    device = make_device(session)
    device.org_unit_id = hq.id
    incident = hotline.open_incident(session, device, REPORT, actor=OPERATOR)
    hotline.set_incident_policy(session, hq, auto_wipe_after_hours=10, remind_before_hours=2, actor=ADMIN)
    session.commit()
    ctx = _ctx(session_factory, settings)
    assert run_job(ctx, "incident_auto_wipe").details == {"reminded": [], "wiped": []}
    frozen_clock.advance(hours=9)
    assert run_job(ctx, "incident_auto_wipe").details == {"reminded": [incident.id], "wiped": []}
    assert run_job(ctx, "incident_auto_wipe").details == {"reminded": [], "wiped": []}  # once
    frozen_clock.advance(hours=1)
    assert run_job(ctx, "incident_auto_wipe").details == {"reminded": [], "wiped": [incident.id]}
    assert run_job(ctx, "incident_auto_wipe").details == {"reminded": [], "wiped": []}
    _fresh(session)
    alerts = session.scalars(select(Alert).order_by(Alert.id)).all()
    assert [(a.kind, a.device_id, a.org_unit_id, a.details) for a in alerts] == [
        ("incident.auto_wipe_reminder", device.id, hq.id, {"incident_id": incident.id}),
        ("incident.auto_wiped", device.id, hq.id, {"incident_id": incident.id}),
    ]
    assert session.get(Incident, incident.id).status == IncidentStatus.WIPE_APPROVED
