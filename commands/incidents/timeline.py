"""One timeline per incident: its steps, each command's delivery read from the commands table
(never copied), and the pushes sent to the device since the call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import Command, CommandStatus, PushAttempt
from mdm.ground.models.incident import Incident


class Delivery:
    """A command's delivery state as the hotline page shows it."""

    QUEUED = "queued"  # written, no push has reached APNs yet
    PUSHED = "pushed"  # APNs accepted a wake-up; the device has not fetched it
    DELIVERED = "delivered"  # the device fetched it, no answer yet
    ACKNOWLEDGED = "acknowledged"
    ERROR = "error"
    NOT_NOW = "not_now"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


def delivery_state(command: Command) -> str:
    if command.status == CommandStatus.ACKNOWLEDGED:
        return Delivery.ACKNOWLEDGED
    if command.status == CommandStatus.ERROR:
        return Delivery.ERROR
    if command.status == CommandStatus.CANCELLED:
        return Delivery.CANCELLED
    if command.status == CommandStatus.EXPIRED:
        return Delivery.EXPIRED
    if command.status == CommandStatus.NOT_NOW:
        return Delivery.NOT_NOW
    if command.status == CommandStatus.SENT:
        return Delivery.DELIVERED
    return Delivery.PUSHED if command.pushed_at is not None else Delivery.QUEUED


@dataclass(frozen=True)
class CommandView:
    uuid: str
    request_type: str
    purpose: str
    state: str
    queued_at: datetime
    pushed_at: datetime | None
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    error_at: datetime | None
    error_chain: list[Any] | None
    delivery_count: int


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # "step", "command" or "push"
    action: str
    actor: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    flagged: bool = False


def incident_commands(incident: Incident) -> list[CommandView]:
    views = []
    for link in incident.commands:
        c = link.command
        views.append(
            CommandView(
                uuid=c.uuid,
                request_type=c.request_type,
                purpose=link.purpose,
                state=delivery_state(c),
                queued_at=c.queued_at,
                pushed_at=c.pushed_at,
                delivered_at=c.sent_at,
                acknowledged_at=c.acknowledged_at,
                error_at=c.error_at,
                error_chain=c.error_chain,
                delivery_count=c.delivery_count,
            )
        )
    return views


def push_attempts(session: Session, incident: Incident) -> list[PushAttempt]:
    return list(
        session.scalars(
            select(PushAttempt)
            .where(
                PushAttempt.device_id == incident.device_id, PushAttempt.attempted_at >= incident.opened_at
            )
            .order_by(PushAttempt.attempted_at, PushAttempt.id)
        )
    )


def incident_timeline(session: Session, incident: Incident) -> list[TimelineEntry]:
    """Everything that happened, oldest first."""
    entries = [
        TimelineEntry(s.occurred_at, "step", s.action, s.actor, dict(s.details or {}), s.flagged)
        for s in incident.steps
    ]
    for view in incident_commands(incident):
        base = {"command_uuid": view.uuid, "request_type": view.request_type, "purpose": view.purpose}
        for action, at in (
            ("queued", view.queued_at),
            ("pushed", view.pushed_at),
            ("delivered", view.delivered_at),
            ("acknowledged", view.acknowledged_at),
            ("error", view.error_at),
        ):
            if at is not None:
                details = {**base, "error_chain": view.error_chain} if action == "error" else base
                entries.append(TimelineEntry(at, "command", action, None, details))
    for attempt in push_attempts(session, incident):
        entries.append(
            TimelineEntry(
                attempt.attempted_at,
                "push",
                "push_accepted" if attempt.status_code == 200 else "push_failed",
                None,
                {"status_code": attempt.status_code, "reason": attempt.reason, "attempts": attempt.attempt},
            )
        )
    order = {"step": 0, "command": 1, "push": 2}
    return sorted(entries, key=lambda e: (e.at, order[e.kind]))


class WipeProgress:
    NOT_REQUESTED = "not_requested"
    REQUESTED = "requested"  # waiting for a second person
    NOT_DELIVERED = "approved_not_delivered"  # EraseDevice queued/pushed, device has not fetched it
    DELIVERED = "delivered_not_confirmed"  # fetched, no acknowledgement yet
    CONFIRMED = "confirmed"
    FAILED = "failed"  # the device answered Error, or the command was cancelled/expired


def wipe_progress(incident: Incident) -> str:
    """Where the wipe stands; "wiped" is only ever claimed on the device's acknowledgement."""
    erase = incident.erase_command
    if erase is None:
        return WipeProgress.REQUESTED if incident.wipe_requested_at else WipeProgress.NOT_REQUESTED
    state = delivery_state(erase)
    if state == Delivery.ACKNOWLEDGED:
        return WipeProgress.CONFIRMED
    if state in (Delivery.QUEUED, Delivery.PUSHED):
        return WipeProgress.NOT_DELIVERED
    if state in (Delivery.DELIVERED, Delivery.NOT_NOW):
        return WipeProgress.DELIVERED
    return WipeProgress.FAILED
