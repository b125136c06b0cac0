"""The periodic jobs. Each is a boundary: it owns its transactions, is idempotent, and records a
JobRun row. Per-device work goes into the command queue, never into APScheduler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commands.inventory_refresh import refresh_due_devices
from commands.queue import expire_overdue
from commands.repush import RepushPolicy, repush_waiting
from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.audit_sealer import seal_all
from mdm.ground.db import transaction
from mdm.ground.models import Alert, JobRun, Severity
from mdm.ground.outbox_drain import DRAIN_LATER_KEY, drain
from mdm.ground.push.certificates import active_push_certificate, days_left
from mdm.roots.scheduler.amapi_jobs import amapi_operations, amapi_pull, amapi_send
from mdm.roots.scheduler.context import JobContext
from mdm.roots.scheduler.fencing import FencedOut
from mdm.roots.scheduler.maintenance import (
    audit_purge,
    enrollment_challenge_purge,
    identity_renewal,
    incident_auto_wipe,
)
from mdm.roots.scheduler.retention import RetentionDays, purge_expired
from mdm.services.ade.schedule import scheduled_sync
from mdm.services.alerts.apns_outage import check_apns_outage
from mdm.services.alerts.email import due_alert_emails, email_enabled, record_email, send_alert_email
from mdm.services.alerts.service import raise_alert
from mdm.services.alerts.webhooks import due_deliveries, post_delivery, record_attempt
from mdm.services.amapi.schedule import scheduled_policy_sync as amapi_scheduled_policy_sync
from mdm.services.android_channel import purge_expired_nonces
from mdm.services.backup.schedule import scheduled_backup
from mdm.services.compliance.evaluation import evaluate_fleet_page
from mdm.services.continuity.hooks import ASK_UNITS_KEY
from mdm.services.continuity.webhooks import readiness_job
from mdm.services.mail.outbox import due_mails, record_mail, with_link
from mdm.services.mail.server import mail_server
from mdm.services.mail.smtp import send_mail
from mdm.services.osupdates.enforcement import sync_fleet as sync_os_updates
from mdm.services.unit_policy import PolicyBook
from mdm.services.vpp.schedule import scheduled_sync as vpp_scheduled_sync

log = logging.getLogger(__name__)


Job = Callable[[JobContext], dict[str, Any]]


def audit_seal(ctx: JobContext) -> dict[str, Any]:
    """The sweep behind the after-commit sealer: events of a process that died before sealing."""
    return {"sealed": seal_all(ctx.factory)}


def outbox_drain(ctx: JobContext) -> dict[str, Any]:
    """The sweep behind the after-commit drain (mdm.ground.outbox_drain): compliance and readiness
    asked by commits of a process that died before draining them, or retried after a failure."""
    return {"settled": drain(ctx.factory)}


def inventory_refresh(ctx: JobContext) -> dict[str, Any]:
    with transaction(ctx.factory) as session:
        count = refresh_due_devices(
            session,
            SYSTEM,
            default_interval_hours=ctx.settings.inventory_interval_hours,
            context=ctx.commands,
        )
        return {"devices": count}


def command_expiry(ctx: JobContext) -> dict[str, Any]:
    """Expire the commands past their lifetime that no delivery met (a delivery expires the ones
    it meets and never hands one over: commands.delivery), so what the console shows is true."""
    with transaction(ctx.factory) as session:
        return {"expired": expire_overdue(session)}


# Devices per transaction of a fleet-wide check: bounded memory, and a SIGTERM waits one page.
FLEET_PAGE = 250


def fleet_check(ctx: JobContext, rules: list[str], page: int = FLEET_PAGE) -> dict[str, Any]:
    """Run `rules` over the fleet a page at a time, each page its own transaction, the unit tree
    and policies loaded once. Told to stop (SIGTERM), the page under way ends after the device
    being evaluated and commits what it did: a stop waits one device's work, never a page's (a
    page of every rule, with each device's profile sources, took 78 s at 100,000 devices).

    Each page asks for the readiness of its devices' units, and the job recomputes them once at
    its end: recomputed after every page, the units several pages share took two thirds of a
    first run (63 of 95 s at 100,000 devices)."""
    with transaction(ctx.factory) as session:
        book = PolicyBook(session)
        book.every_policy()  # resolved now: the book outlives this session
    devices = 0
    after = 0
    try:
        while not ctx.should_stop():
            with transaction(ctx.factory) as session:
                session.info[ASK_UNITS_KEY] = session.info[DRAIN_LATER_KEY] = True
                done = evaluate_fleet_page(
                    session, book, rules=rules, after_id=after, batch=page, should_stop=ctx.should_stop
                )
            devices += len(done)
            if ctx.should_stop():
                break
            if not done:
                return {"devices": devices}
            after = done[-1]
    finally:
        if not ctx.should_stop():
            drain(ctx.factory)  # stopping: the committed rows wait for the next drain or sweep
    log.info("scheduler: %s stopped after %d devices", ",".join(rules), devices)
    return {"devices": devices, "stopped": True}


def offline_check(ctx: JobContext) -> dict[str, Any]:
    return fleet_check(ctx, ["offline_too_long"])


def certificate_expiry(ctx: JobContext) -> dict[str, Any]:
    result = fleet_check(ctx, ["identity_certificate_expiring"])
    with transaction(ctx.factory) as session:
        push_alert = _push_certificate_alert(session)
    return {**result, "push_certificate_alert": push_alert}


def _push_certificate_alert(session: Session, warning_days: int = 30) -> bool:
    """One alert per push certificate entering its last 30 days (not one a day)."""
    row = active_push_certificate(session)
    if row is None or days_left(row) > warning_days:
        return False
    marker = row.not_after.isoformat()
    for alert in session.scalars(select(Alert).where(Alert.kind == "push_certificate.expiring")):
        if alert.details.get("not_after") == marker:
            return False
    left = days_left(row)
    raise_alert(
        session,
        "push_certificate.expiring",
        Severity.CRITICAL if left <= 7 else Severity.WARNING,
        f"APNs push certificate {row.topic} expires in {left} days ({row.not_after:%Y-%m-%d})",
        details={"topic": row.topic, "not_after": marker, "days_left": left},
    )
    return True


def webhook_delivery(ctx: JobContext) -> dict[str, Any]:
    """Deliver what is due; no transaction stays open while a webhook answers."""
    with transaction(ctx.factory) as session:
        outgoing = due_deliveries(session, secret_key=ctx.settings.secret_key)
    delivered = 0
    for item in outgoing:
        outcome = post_delivery(
            item,
            timeout=ctx.settings.webhook_timeout_seconds,
            allow_networks=ctx.settings.webhook_allow_networks,
        )
        try:
            with transaction(ctx.factory) as session:
                record_attempt(
                    session, item.delivery_id, outcome, max_attempts=ctx.settings.webhook_max_attempts
                )
        except Exception:  # one delivery that cannot be recorded must not stop the others
            log.exception("recording webhook delivery %s failed", item.delivery_id)
        delivered += outcome.ok
    return {"attempted": len(outgoing), "delivered": delivered}


def alert_email(ctx: JobContext) -> dict[str, Any]:
    with transaction(ctx.factory) as session:
        server = mail_server(session, ctx.settings)
        if not email_enabled(server, ctx.settings):
            return {"enabled": False}
        outgoing = due_alert_emails(session, max_attempts=ctx.settings.webhook_max_attempts)
    assert server is not None
    sent = 0
    for item in outgoing:
        error = send_alert_email(server, ctx.settings.alert_email_to, item)
        try:
            with transaction(ctx.factory) as session:
                record_email(session, item.alert_id, error)
        except Exception:  # one alert that cannot be recorded must not stop the others
            log.exception("recording the e-mail of alert %s failed", item.alert_id)
        sent += error is None
    return {"enabled": True, "attempted": len(outgoing), "sent": sent}


def mail_delivery(ctx: JobContext) -> dict[str, Any]:
    """Send the mails to people (approvers told of a wipe waiting) through the mail server; they
    wait, unsent, while none is set."""
    with transaction(ctx.factory) as session:
        server = mail_server(session, ctx.settings)
        if server is None:
            return {"enabled": False}
        outgoing = due_mails(session)
    sent = 0
    for item in outgoing:
        error = send_mail(server, [item.to], item.subject, with_link(item, ctx.settings.public_url))
        try:
            with transaction(ctx.factory) as session:
                record_mail(session, item.id, error, max_attempts=ctx.settings.webhook_max_attempts)
        except Exception:  # one mail that cannot be recorded must not stop the others
            log.exception("recording outgoing mail %s failed", item.id)
        sent += error is None
    return {"enabled": True, "attempted": len(outgoing), "sent": sent}


def push_outbox(ctx: JobContext) -> dict[str, Any]:
    """Wake again the devices whose commands wait too long, send every due wake-up (left by a
    killed worker, or waiting out an APNs outage), and raise or close the APNs outage alert."""
    s = ctx.settings
    with transaction(ctx.factory) as session:
        repushed = repush_waiting(
            session, RepushPolicy(timedelta(minutes=s.push_repush_minutes), s.push_repush_max)
        )
    drained = ctx.dispatcher.drain() if ctx.dispatcher is not None else {}
    with transaction(ctx.factory) as session:
        outage = check_apns_outage(session, timedelta(minutes=s.apns_outage_alert_minutes))
    return {**repushed, **drained, "apns_outage_alert": outage}


def retention_purge(ctx: JobContext) -> dict[str, Any]:
    s = ctx.settings
    days = RetentionDays(
        s.inventory_history_retention_days, s.command_result_retention_days, s.alert_retention_days
    )
    with transaction(ctx.factory) as session:
        return purge_expired(session, days)


def ade_sync(ctx: JobContext) -> dict[str, Any]:
    """Sync with Apple Business Manager when due (HIKESHI_ADE_SYNC_MINUTES); alert on token expiry."""
    return scheduled_sync(ctx.factory, ctx.settings)


def vpp_sync(ctx: JobContext) -> dict[str, Any]:
    """Apps and Books: pending license events polled, assets synced when due, token expiry alert."""
    return vpp_scheduled_sync(ctx.factory, ctx.settings)


def amapi_policies(ctx: JobContext) -> dict[str, Any]:
    """Android Management API: each AMAPI unit's policy patched where its content changed."""
    return amapi_scheduled_policy_sync(ctx.factory, ctx.settings)


def os_updates(ctx: JobContext) -> dict[str, Any]:
    """Bring tablets to their unit's OS target (declarations, or the update commands before iOS 17),
    then re-check the deadline rule: a deadline passes without any device saying anything."""
    with transaction(ctx.factory) as session:
        outcome = sync_os_updates(session, actor=SYSTEM, context=ctx.commands)
    return {"queued": outcome.queued, **fleet_check(ctx, ["os_update_overdue"])}


def agent_nonce_purge(ctx: JobContext) -> dict[str, Any]:
    with transaction(ctx.factory) as session:
        return {"purged": purge_expired_nonces(session)}


# name → (job, interval in scheduler ticks; a tick is settings.scheduler_tick_seconds, 60 s).
JOBS: dict[str, tuple[Job, int]] = {
    "push_outbox": (push_outbox, 1),
    "webhook_delivery": (webhook_delivery, 1),
    "readiness_recompute": (readiness_job, 1),
    "alert_email": (alert_email, 1),
    "mail_delivery": (mail_delivery, 1),
    "inventory_refresh": (inventory_refresh, 15),
    "command_expiry": (command_expiry, 5),
    "offline_check": (offline_check, 15),
    "certificate_expiry": (certificate_expiry, 60),
    "retention_purge": (retention_purge, 24 * 60),
    "identity_renewal": (identity_renewal, 60),
    "enrollment_challenge_purge": (enrollment_challenge_purge, 24 * 60),
    "agent_nonce_purge": (agent_nonce_purge, 60),  # the one place expired nonces are forgotten
    "audit_purge": (audit_purge, 24 * 60),
    "audit_seal": (audit_seal, 1),
    "outbox_drain": (outbox_drain, 1),
    "incident_auto_wipe": (incident_auto_wipe, 1),  # reminders and wipes on the minute
    "scheduled_backup": (scheduled_backup, 5),
    "os_updates": (os_updates, 15),
    "ade_sync": (
        ade_sync,
        5,
    ),  # syncs only when due (ade_sync_minutes)  # backs up only when due (backup_interval_minutes)
    "vpp_sync": (vpp_sync, 1),  # polls pending events each tick; syncs assets when due
    "amapi_policies": (amapi_policies, 1),  # patches only the AMAPI policies whose content changed
    # Android Management API: commands no process sent after commit, operations not yet settled,
    # and the notification pull (when HIKESHI_AMAPI_PULL_SECONDS have passed).
    "amapi_send": (amapi_send, 1),
    "amapi_operations": (amapi_operations, 1),
    "amapi_pull": (amapi_pull, 1),
}


def run_job(ctx: JobContext, name: str) -> JobRun:
    """Run one job and record it; a failing job is recorded as failed and never kills the scheduler."""
    job, _ = JOBS[name]
    try:
        with transaction(ctx.factory) as session:
            run = JobRun(job=name, holder=ctx.holder, started_at=clock.now(), outcome="running", details={})
            session.add(run)
    except FencedOut as exc:
        log.error("scheduler job %s not started: %s", name, exc)
        return JobRun(job=name, holder=ctx.holder, started_at=clock.now(), outcome="fenced", details={})
    try:
        details = job(ctx)
        outcome = "ok"
    except FencedOut as exc:
        # Another scheduler holds the lock now; nothing of this run was kept. Said so unfenced.
        log.error("scheduler job %s abandoned: %s", name, exc)
        with transaction(sessionmaker(ctx.factory.kw["bind"])) as session:
            fenced = session.merge(run)
            fenced.finished_at = clock.now()
            fenced.outcome = "fenced"
            fenced.details = {"error": str(exc)[:500]}
        return fenced
    except Exception as exc:
        log.exception("scheduler job %s failed", name)
        details, outcome = {"error": f"{type(exc).__name__}: {exc}"[:500]}, "failed"
    with transaction(ctx.factory) as session:
        run = session.merge(run)
        run.finished_at = clock.now()
        run.outcome = outcome
        run.details = details
    return run
