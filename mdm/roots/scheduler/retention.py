"""Retention: inventory history, command results (and AMAPI notifications), alerts, readiness
changes and job runs older than their configured number of days are deleted (0 keeps them for
ever). The seeds ask for logs kept for a defined period: the audit trail has its own, chained
purge (mdm.ground.audit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import (
    Alert,
    AmapiNotification,
    CommandResult,
    ComplianceFinding,
    ForeignCommandResult,
    InventoryChange,
    JobRun,
    ReadinessDelivery,
    ReadinessEvent,
    WebhookAttempt,
    WebhookDelivery,
)

# The longest a Pub/Sub subscription keeps a message it may still deliver (Google's limit).
PUBSUB_LONGEST_RETENTION = timedelta(days=31)


@dataclass(frozen=True)
class RetentionDays:
    inventory_history: int
    command_results: int
    alerts: int
    job_runs: int = 90


def purge_expired(session: Session, days: RetentionDays) -> dict[str, int]:
    """Delete what is past retention; returns rows deleted per kind. Never commits."""
    now = clock.now()
    counts: dict[str, int] = {}

    def run(name: str, stmt: Delete) -> None:
        # Session.execute is typed as returning a Result; for a DELETE it is a CursorResult.
        result = cast(CursorResult[Any], session.execute(stmt.execution_options(synchronize_session=False)))
        counts[name] = result.rowcount or 0

    if days.inventory_history:
        run(
            "inventory_changes",
            delete(InventoryChange).where(
                InventoryChange.occurred_at < now - timedelta(days=days.inventory_history)
            ),
        )
    if days.command_results:
        # The raw results are the bulk; the command rows stay (other tables point at them).
        cutoff = now - timedelta(days=days.command_results)
        run("command_results", delete(CommandResult).where(CommandResult.received_at < cutoff))
        run(
            "foreign_command_results",
            delete(ForeignCommandResult).where(ForeignCommandResult.received_at < cutoff),
        )
        # Google's Pub/Sub messages, with what became of each: their message ids are what a
        # redelivery meets, so they are kept at least as long as a subscription can hold a message.
        run(
            "amapi_notifications",
            delete(AmapiNotification).where(
                AmapiNotification.received_at < min(cutoff, now - PUBSUB_LONGEST_RETENTION)
            ),
        )
    if days.alerts:
        cutoff = now - timedelta(days=days.alerts)
        old_alerts = select(Alert.id).where(Alert.created_at < cutoff)
        old_deliveries = select(WebhookDelivery.id).where(WebhookDelivery.alert_id.in_(old_alerts))
        run("webhook_attempts", delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old_deliveries)))
        run("webhook_deliveries", delete(WebhookDelivery).where(WebhookDelivery.alert_id.in_(old_alerts)))
        run("alerts", delete(Alert).where(Alert.created_at < cutoff))
        # Closed findings go with the alerts of their time; open ones stay whatever their age.
        run(
            "compliance_findings",
            delete(ComplianceFinding).where(
                ComplianceFinding.closed_at.is_not(None), ComplianceFinding.closed_at < cutoff
            ),
        )
        # Readiness changes are kept as long as alerts: both are the record of what went wrong when.
        old_events = select(ReadinessEvent.id).where(ReadinessEvent.occurred_at < cutoff)
        run(
            "readiness_deliveries",
            delete(ReadinessDelivery).where(ReadinessDelivery.event_id.in_(old_events)),
        )
        run("readiness_events", delete(ReadinessEvent).where(ReadinessEvent.occurred_at < cutoff))
    if days.job_runs:
        run("job_runs", delete(JobRun).where(JobRun.started_at < now - timedelta(days=days.job_runs)))
    return counts
