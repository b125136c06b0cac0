"""What "working" means for one tablet under a unit's plan: the rules, as a pure function of
what is known about the device (loaded in bulk by mdm.services.continuity.readiness)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mdm.ground.models import EnrollmentState, Severity
from mdm.ground.models.incident import LossKind
from mdm.services.continuity.plans import Plan

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
    # A spare swapped into its unit and not yet arrived: when, and how many of the unit's
    # profiles a ProfileList since then has not shown installed at their desired version.
    swapped_at: datetime | None = None
    profiles_unverified: int = 0


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
    found.extend(_spare_arrival(facts))
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


def _spare_arrival(facts: DeviceFacts) -> list[Reason]:
    """A swapped-in spare works for its unit only once it has checked in there and holds the
    unit's profiles: until then the crew has a tablet without the unit's Wi-Fi, apps and
    restrictions, however recently it was seen charging in the cabinet."""
    if facts.swapped_at is None:
        return []
    if facts.last_seen_at is None or facts.last_seen_at <= facts.swapped_at:
        return [
            Reason(
                "spare_not_checked_in",
                "予備機が配置後まだ接続していない",
                "spare has not checked in since the swap",
                {"swapped_at": facts.swapped_at.isoformat()},
            )
        ]
    if facts.profiles_unverified:
        n = facts.profiles_unverified
        return [
            Reason(
                "spare_profiles_pending",
                f"予備機が隊の構成プロファイルをまだ保持していない (未確認 {n}件)",
                f"spare does not hold the unit's profiles yet ({n} not verified)",
                {"profiles_unverified": n},
            )
        ]
    return []


def is_available_spare(facts: DeviceFacts) -> bool:
    """A spare can be handed out: enrolled and not reported lost. It may sit charging in a
    cabinet, so being seen recently and its battery are not asked of it."""
    return facts.incident_id is None and facts.enrollment_state == EnrollmentState.ENROLLED
