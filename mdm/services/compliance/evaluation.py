"""Evaluating devices: run every rule, open findings for new violations (raising an alert),
close the findings whose condition cleared, and keep each device's compliance state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from mdm.ground import clock
from mdm.ground.db import insert_if_absent, is_postgres, update_rows
from mdm.ground.models import (
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
from mdm.services.alerts.service import AlertSpec, raise_alerts
from mdm.services.compliance.candidates import candidates_for
from mdm.services.compliance.queries import with_compliance_filter
from mdm.services.compliance.rules import RULE_NEEDS, RULES, DeviceState, Violation
from mdm.services.compliance.sources import (
    allowed_apps_for,
    evaluated_together,
    expected_profiles_for,
    os_update_target_for,
)
from mdm.services.unit_policy import PolicyBook


@dataclass
class _Loaded:
    """What the rules read, for a batch of devices: one query per table, not per device."""

    facts: dict[int, DeviceFacts]
    apps: dict[int, list[InstalledApp]]
    profiles: dict[int, list[InstalledProfile]]
    identity_certificates: dict[int, list[DeviceCertificate]]
    open_findings: dict[int, list[ComplianceFinding]]
    compliance: dict[int, DeviceCompliance]


def _grouped(session: Session, model: Any, column: Any, ids: list[int]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in session.scalars(select(model).where(column.in_(ids)).order_by(model.id)):
        grouped[getattr(row, column.key)].append(row)
    return grouped


# In a fleet check, an open finding still seen is rewritten when what it says changed, else once
# a day at most: a check every 15 minutes must not rewrite tens of thousands of unchanged rows.
_FINDING_REFRESH = timedelta(days=1)


def _needs(names: Iterable[str]) -> frozenset[str]:
    return frozenset().union(*(RULE_NEEDS.get(name, frozenset()) for name in names))


def _load(session: Session, ids: list[int], needs: frozenset[str] = frozenset(RULE_NEEDS)) -> _Loaded:
    """`ids` is one batch (evaluate_fleet's bounded pages, or one request's devices)."""
    return _Loaded(
        facts={
            f.device_id: f for f in session.scalars(select(DeviceFacts).where(DeviceFacts.device_id.in_(ids)))
        }
        if "facts" in needs
        else {},
        apps=_grouped(session, InstalledApp, InstalledApp.device_id, ids) if "apps" in needs else {},
        profiles=_grouped(session, InstalledProfile, InstalledProfile.device_id, ids)
        if "profiles" in needs
        else {},
        identity_certificates=_grouped(session, DeviceCertificate, DeviceCertificate.device_id, ids)
        if "identity_certificates" in needs
        else {},
        open_findings=_grouped_open_findings(session, ids),
        compliance={
            c.device_id: c
            for c in session.scalars(select(DeviceCompliance).where(DeviceCompliance.device_id.in_(ids)))
        },
    )


def _grouped_open_findings(session: Session, ids: list[int]) -> dict[int, list[ComplianceFinding]]:
    grouped: dict[int, list[ComplianceFinding]] = defaultdict(list)
    for finding in session.scalars(
        select(ComplianceFinding)
        .where(ComplianceFinding.device_id.in_(ids), ComplianceFinding.closed_at.is_(None))
        .order_by(ComplianceFinding.id)
    ):
        grouped[finding.device_id].append(finding)
    return grouped


def _state(
    session: Session,
    device: Device,
    book: PolicyBook,
    loaded: _Loaded,
    needs: frozenset[str] = frozenset(RULE_NEEDS),
) -> DeviceState:
    return DeviceState(
        device=device,
        policy=book.for_unit(device.org_unit_id),
        now=clock.now(),
        facts=loaded.facts.get(device.id),
        apps=loaded.apps.get(device.id, []),
        profiles=loaded.profiles.get(device.id, []),
        identity_certificates=loaded.identity_certificates.get(device.id, []),
        app_policy=allowed_apps_for(session, device) if "app_policy" in needs else None,
        expected_profiles=expected_profiles_for(session, device) if "expected_profiles" in needs else None,
        os_update_target=os_update_target_for(session, device) if "os_update_target" in needs else None,
    )


def load_state(session: Session, device: Device, book: PolicyBook | None = None) -> DeviceState:
    session.flush()
    return _state(session, device, book or PolicyBook(session), _load(session, [device.id]))


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
    return evaluate_devices(session, [device], book=book, rules=rules)[device.id]


def evaluate_devices(
    session: Session,
    devices: list[Device],
    *,
    book: PolicyBook | None = None,
    rules: Iterable[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[int, list[ComplianceFinding]]:
    """Evaluate several devices at once (what they have is loaded in one query per table, what
    changes written in a few batched statements); returns each device's open findings.

    `should_stop` is asked before each device: when it answers True the devices not yet evaluated
    are left as they were and are missing from the answer (a fleet check told to stop ends within
    one device's work, not one page's)."""
    if not devices:
        return {}
    session.flush()
    book = book or PolicyBook(session)
    names = list(RULES) if rules is None else list(rules)
    needs = _needs(names)
    loaded = _load(session, [d.id for d in devices], needs)
    every_rule = set(names) >= set(RULES)
    outcomes: list[_Outcome] = []
    with evaluated_together(session, [d.id for d in devices]):
        for device in devices:
            if should_stop is not None and should_stop():
                break
            state = _state(session, device, book, loaded, needs)
            outcomes.append(_evaluate(state, names, loaded, every_rule))
    _open_findings(session, outcomes)
    _store_states(session, outcomes, loaded, every_rule=every_rule)
    return {o.device.id: o.still_open for o in outcomes}


@dataclass
class _Outcome:
    """One device's evaluation: its findings still open, and the violations that open new ones."""

    device: Device
    still_open: list[ComplianceFinding]
    new: list[tuple[str, Violation]]
    now: datetime


def _evaluate(state: DeviceState, names: list[str], loaded: _Loaded, every_rule: bool) -> _Outcome:
    device = state.device
    found: dict[tuple[str, str], Violation] = {}
    for name in names:
        for violation in RULES[name](state):
            found[(name, violation.subject)] = violation
    now = state.now
    still_open: list[ComplianceFinding] = []
    current: dict[tuple[str, str], ComplianceFinding] = {}
    for finding in loaded.open_findings.get(device.id, []):
        current[(finding.rule, finding.subject)] = finding
        if finding.rule not in names:
            still_open.append(finding)
            continue
        seen = found.get((finding.rule, finding.subject))
        if seen is None:
            finding.closed_at = now
        else:
            _still_seen(finding, seen, now, refresh=every_rule)
            still_open.append(finding)
    new = [(key[0], violation) for key, violation in found.items() if key not in current]
    return _Outcome(device, still_open, new, now)


def _still_seen(finding: ComplianceFinding, seen: Violation, now: datetime, *, refresh: bool) -> None:
    """A full evaluation (after the device's inventory) confirms the finding now; a check of some
    rules over the fleet writes it only when it changed, or to confirm it once a day."""
    message = seen.message[:512]
    changed = (finding.severity, finding.message, finding.details) != (seen.severity, message, seen.details)
    if changed:
        finding.severity = seen.severity
        finding.message = message
        finding.details = seen.details
    if refresh or changed or finding.last_seen_at is None or now - finding.last_seen_at >= _FINDING_REFRESH:
        finding.last_seen_at = now


def _open_findings(session: Session, outcomes: list[_Outcome]) -> None:
    """Open the new findings of every device evaluated, each with its alert: one batched INSERT
    for the findings, one for the alerts (a fleet check's first run opens thousands)."""
    opened: list[tuple[_Outcome, ComplianceFinding, Violation]] = []
    for outcome in outcomes:
        for rule, violation in outcome.new:
            finding = ComplianceFinding(
                device_id=outcome.device.id,
                rule=rule,
                subject=violation.subject[:255],
                severity=violation.severity,
                message=violation.message[:512],
                details=violation.details,
                opened_at=outcome.now,
                last_seen_at=outcome.now,
            )
            opened.append((outcome, finding, violation))
    if not opened:
        for outcome in outcomes:
            outcome.still_open.sort(key=lambda f: f.id)
        return
    session.add_all(finding for _, finding, _ in opened)
    session.flush()  # the findings' ids, for their alerts
    raise_alerts(
        session,
        [
            AlertSpec(
                f"compliance.{finding.rule}",
                violation.severity,
                violation.message,
                device=outcome.device,
                finding_id=finding.id,
                details={"rule": finding.rule, "subject": violation.subject, **violation.details},
            )
            for outcome, finding, violation in opened
        ],
    )
    for outcome, finding, _ in opened:
        outcome.still_open.append(finding)
    for outcome in outcomes:
        outcome.still_open.sort(key=lambda f: f.id)


def _store_states(session: Session, outcomes: list[_Outcome], loaded: _Loaded, *, every_rule: bool) -> None:
    """Keep each device's state. An evaluation of every rule records when it ran (the device page
    shows it); a check of some rules (the scheduled fleet checks) writes only a state that changed.
    The devices without a row yet get theirs in one statement (ON CONFLICT DO NOTHING: another
    evaluation may insert it first), then are read back with a row lock in one more."""
    wanted: dict[int, tuple[str, int]] = {}
    for outcome in outcomes:
        findings = outcome.still_open
        worst = max((f.severity for f in findings), key=Severity.rank, default=Severity.OK)
        row = loaded.compliance.get(outcome.device.id)
        if not every_rule:
            if row is None and worst == Severity.OK and not findings:
                continue  # no row reads as "ok" already (with_compliance_filter)
            if row is not None and row.state == worst and row.open_findings == len(findings):
                continue
        wanted[outcome.device.id] = (worst, len(findings))
    missing = sorted(device_id for device_id in wanted if device_id not in loaded.compliance)
    now = clock.now()
    rows = dict(loaded.compliance)
    if missing:
        insert_if_absent(
            session,
            DeviceCompliance,
            [
                {"device_id": i, "state": wanted[i][0], "open_findings": wanted[i][1], "evaluated_at": now}
                for i in missing
            ],
        )
        rows.update(
            (row.device_id, row)
            for row in session.scalars(
                select(DeviceCompliance)
                .where(DeviceCompliance.device_id.in_(missing))
                .order_by(DeviceCompliance.device_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
    for device_id, (worst, count) in wanted.items():
        row = rows[device_id]  # inserted above, or by the transaction we waited for
        # Written below in one statement for the whole batch: the session keeps them as committed.
        set_committed_value(row, "state", worst)
        set_committed_value(row, "open_findings", count)
        set_committed_value(row, "evaluated_at", now)
    existing = sorted(device_id for device_id in wanted if device_id in loaded.compliance)
    if existing and is_postgres(session):
        # Locked in id order first, as row-by-row updates did: one UPDATE of many rows locks them
        # in whatever order its join reads them, and two overlapping batches could deadlock.
        session.execute(
            select(DeviceCompliance.device_id)
            .where(DeviceCompliance.device_id.in_(existing))
            .order_by(DeviceCompliance.device_id)
            .with_for_update()
        )
    update_rows(
        session,
        DeviceCompliance,
        [
            {"device_id": device_id, "state": worst, "open_findings": count, "evaluated_at": now}
            for device_id, (worst, count) in sorted(wanted.items())
        ],
    )


def device_compliance(session: Session, device_id: int) -> str:
    """The device's state: the worst severity of its open findings, "ok" when none."""
    row = session.get(DeviceCompliance, device_id)
    return row.state if row is not None else Severity.OK


def devices_by_compliance(session: Session, states: Iterable[str], *, limit: int = 500) -> list[Device]:
    """Devices whose compliance state is one of `states` ("ok" includes never-evaluated ones)."""
    stmt = with_compliance_filter(select(Device), states).order_by(Device.id).limit(limit)
    return list(session.scalars(stmt))


def evaluate_fleet(session: Session, *, rules: Iterable[str] | None = None, batch: int = 500) -> int:
    """Evaluate every enrolled device the rules could concern, in one transaction; returns how
    many. The scheduler runs the same pages each in its own transaction (evaluate_fleet_page)."""
    book = PolicyBook(session)
    count = 0
    after = 0
    while True:
        done = evaluate_fleet_page(session, book, rules=rules, after_id=after, batch=batch)
        if not done:
            return count
        count += len(done)
        after = done[-1]


def evaluate_fleet_page(
    session: Session,
    book: PolicyBook,
    *,
    rules: Iterable[str] | None = None,
    after_id: int = 0,
    batch: int = 500,
    should_stop: Callable[[], bool] | None = None,
) -> list[int]:
    """Evaluate the next `batch` enrolled devices after `after_id` that `rules` could concern
    (mdm.services.compliance.candidates); returns their ids, empty when none is left. A fixed
    number of statements per page, whatever the fleet's size (the changed rows written in
    batches). Told to stop (`should_stop`), it returns the ids of the devices evaluated so far."""
    names = list(RULES) if rules is None else list(rules)
    devices = list(
        session.scalars(
            select(Device)
            .where(
                Device.enrollment_state == EnrollmentState.ENROLLED,
                Device.id > after_id,
                candidates_for(names, book, clock.now()),
            )
            .order_by(Device.id)
            .limit(batch)
        )
    )
    return list(evaluate_devices(session, devices, book=book, rules=names, should_stop=should_stop))


def evaluate_after_inventory(session: Session, devices: list[Device]) -> None:
    """Connected to mdm.services.inventory.events' INVENTORY_UPDATED by the wiring."""
    evaluate_devices(session, devices)
