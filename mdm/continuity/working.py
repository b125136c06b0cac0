"""What "working" means for one tablet under a unit's plan: the rules, as a pure function of
what is known about the device (loaded in bulk by mdm.continuity.readiness)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mdm.continuity.plans import Plan
from mdm.models import EnrollmentState, Severity
from mdm.models.incident import LossKind

# Findings at these severities make a device non-compliant (info is only a note).
BREAKING = (Severity.WARNING, Severity.CRITICAL)


@dataclass(frozen=True)
class Reason:
    """Why one tablet does not count as working; `ja`/`en` are shown to people."""

    code: str
    ja: str
    en: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "ja": self.ja, "en": self.en, **self.data}


@dataclass(frozen=True)
class DeviceFacts:
    """Everything the rules look at for one device."""

    device_id: int
    name: str
    serial_number: str | None
    enrollment_state: str
    last_seen_at: datetime | None
    battery_level: float | None = None  # 0.0 – 1.0 as Apple reports it; None: not reported
    incident_id: int | None = None  # the open loss/theft incident, if any
    incident_kind: str | None = None
    # (rule, severity) of each open compliance finding
    findings: tuple[tuple[str, str], ...] = ()


def problems(facts: DeviceFacts, plan: Plan, now: datetime) -> list[Reason]:
    """Every reason the device is not working under `plan`; empty: it is working."""
    found: list[Reason] = []
    if facts.incident_id is not None:
        stolen = facts.incident_kind == LossKind.STOLEN
        found.append(
            Reason(
                "stolen" if stolen else "lost",
                f"端末{'盗難' if stolen else '紛失'} (インシデント {facts.incident_id})",
                f"tablet {'stolen' if stolen else 'lost'} (incident {facts.incident_id})",
                {"incident_id": facts.incident_id},
            )
        )
    if facts.enrollment_state == EnrollmentState.RETIRED:
        found.append(Reason("retired", "端末は消去・廃棄済み", "tablet retired (wiped)"))
    elif facts.enrollment_state != EnrollmentState.ENROLLED:
        found.append(
            Reason(
                "not_enrolled",
                "端末がMDMに登録されていない",
                f"tablet not enrolled ({facts.enrollment_state})",
                {"enrollment_state": facts.enrollment_state},
            )
        )
    if plan.require_compliant:
        ignored = set(plan.ignored_rules)
        broken = sorted({rule for rule, severity in facts.findings if severity in BREAKING} - ignored)
        if broken:
            found.append(
                Reason(
                    "noncompliant",
                    "コンプライアンス違反: " + ", ".join(broken),
                    "not compliant: " + ", ".join(broken),
                    {"rules": broken},
                )
            )
    limit = now - timedelta(minutes=plan.max_seen_minutes)
    if facts.last_seen_at is None or facts.last_seen_at < limit:
        seen = facts.last_seen_at.isoformat() if facts.last_seen_at else None
        found.append(
            Reason(
                "not_seen",
                f"{plan.max_seen_minutes}分以上通信なし",
                f"not seen for over {plan.max_seen_minutes} minutes",
                {"last_seen_at": seen},
            )
        )
    if plan.min_battery_percent > 0 and facts.battery_level is not None:
        percent = round(facts.battery_level * 100)
        if percent < plan.min_battery_percent:
            found.append(
                Reason(
                    "battery_low",
                    f"バッテリー残量 {percent}% (基準 {plan.min_battery_percent}%)",
                    f"battery at {percent}% (plan: {plan.min_battery_percent}%)",
                    {"battery_percent": percent},
                )
            )
    return found


def is_available_spare(facts: DeviceFacts) -> bool:
    """A spare can be handed out: enrolled and not reported lost. It may sit charging in a
    cabinet, so being seen recently and its battery are not asked of it."""
    return facts.incident_id is None and facts.enrollment_state == EnrollmentState.ENROLLED
