"""Evaluating devices: run every rule, open findings for new violations (raising an alert),
close the findings whose condition cleared, and keep each device's compliance state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm import clock
from mdm.alerts.service import raise_alert
from mdm.compliance import profile_sources  # noqa: F401  (registers the profiles' app rules)
from mdm.compliance.policy import PolicyBook
from mdm.compliance.queries import with_compliance_filter
from mdm.compliance.rules import RULES, DeviceState, Violation
from mdm.compliance.sources import allowed_apps_for, expected_profiles_for
from mdm.inventory.events import after_inventory
from mdm.models import (
    ComplianceFinding,
    Device,
    DeviceCertificate,
    DeviceCompliance,
    DeviceFacts,
    EnrollmentState,
    InstalledApp,
    InstalledProfile,
    Severity,
)


def load_state(session: Session, device: Device, book: PolicyBook | None = None) -> DeviceState:
    book = book or PolicyBook(session)
    return DeviceState(
        device=device,
        policy=book.for_unit(device.org_unit_id),
        now=clock.now(),
        facts=session.get(DeviceFacts, device.id),
        apps=list(session.scalars(select(InstalledApp).where(InstalledApp.device_id == device.id))),
        profiles=list(
            session.scalars(select(InstalledProfile).where(InstalledProfile.device_id == device.id))
        ),
        identity_certificates=list(
            session.scalars(select(DeviceCertificate).where(DeviceCertificate.device_id == device.id))
        ),
        app_policy=allowed_apps_for(session, device),
        expected_profiles=expected_profiles_for(session, device),
    )


def open_findings(session: Session, device_id: int) -> list[ComplianceFinding]:
    return list(
        session.scalars(
            select(ComplianceFinding)
            .where(ComplianceFinding.device_id == device_id, ComplianceFinding.closed_at.is_(None))
            .order_by(ComplianceFinding.id)
        )
    )


def evaluate_device(
    session: Session, device: Device, *, book: PolicyBook | None = None, rules: Iterable[str] | None = None
) -> list[ComplianceFinding]:
    """Evaluate the device (all rules, or only those named) and return its open findings."""
    state = load_state(session, device, book)
    names = list(RULES) if rules is None else list(rules)
    found: dict[tuple[str, str], Violation] = {}
    for name in names:
        for violation in RULES[name](state):
            found[(name, violation.subject)] = violation
    now = state.now
    current = {(f.rule, f.subject): f for f in open_findings(session, device.id)}
    for key, finding in current.items():
        if finding.rule not in names:
            continue
        violation = found.get(key)
        if violation is None:
            finding.closed_at = now
        else:
            finding.last_seen_at = now
            finding.severity = violation.severity
            finding.message = violation.message[:512]
            finding.details = violation.details
    for key, violation in found.items():
        if key not in current:
            _open_finding(session, device, key[0], violation, now)
    session.flush()
    still_open = open_findings(session, device.id)
    _store_state(session, device, still_open)
    return still_open


def _open_finding(session: Session, device: Device, rule: str, violation: Violation, now: datetime) -> None:
    finding = ComplianceFinding(
        device_id=device.id,
        rule=rule,
        subject=violation.subject[:255],
        severity=violation.severity,
        message=violation.message[:512],
        details=violation.details,
        opened_at=now,
        last_seen_at=now,
    )
    session.add(finding)
    session.flush()
    raise_alert(
        session,
        f"compliance.{rule}",
        violation.severity,
        violation.message,
        device=device,
        finding_id=finding.id,
        details={"rule": rule, "subject": violation.subject, **violation.details},
    )


def _store_state(session: Session, device: Device, findings: list[ComplianceFinding]) -> None:
    worst = max((f.severity for f in findings), key=Severity.rank, default=Severity.OK)
    row = session.get(DeviceCompliance, device.id)
    if row is None:
        row = DeviceCompliance(device_id=device.id)
        session.add(row)
    row.state = worst
    row.open_findings = len(findings)
    row.evaluated_at = clock.now()


def device_compliance(session: Session, device_id: int) -> str:
    """The device's state: the worst severity of its open findings, "ok" when none."""
    row = session.get(DeviceCompliance, device_id)
    return row.state if row is not None else Severity.OK


def devices_by_compliance(session: Session, states: Iterable[str], *, limit: int = 500) -> list[Device]:
    """Devices whose compliance state is one of `states` ("ok" includes never-evaluated ones)."""
    stmt = with_compliance_filter(select(Device), states).order_by(Device.id).limit(limit)
    return list(session.scalars(stmt))


def evaluate_fleet(session: Session, *, rules: Iterable[str] | None = None, batch: int = 500) -> int:
    """Evaluate every enrolled device (the scheduled check); returns how many."""
    book = PolicyBook(session)
    count = 0
    last_id = 0
    while True:
        devices = session.scalars(
            select(Device)
            .where(Device.enrollment_state == EnrollmentState.ENROLLED, Device.id > last_id)
            .order_by(Device.id)
            .limit(batch)
        ).all()
        if not devices:
            return count
        for device in devices:
            evaluate_device(session, device, book=book, rules=rules)
        count += len(devices)
        last_id = devices[-1].id


@after_inventory
def evaluate_after_inventory(session: Session, device: Device, request_type: str) -> None:
    evaluate_device(session, device)
