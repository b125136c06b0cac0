"""The compliance rules: each a small named function from what is known of a device to the
violations it finds. A rule that lacks the data it needs finds nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mdm.ground.models import (
    Device,
    DeviceCertificate,
    DeviceFacts,
    InstalledApp,
    InstalledProfile,
    Severity,
)
from mdm.services.compliance.sources import AppPolicy, ExpectedProfile, OsUpdateTarget
from mdm.services.inventory.values import version_key
from mdm.services.unit_policy import UnitPolicy, parse_patch_level


@dataclass(frozen=True)
class Violation:
    subject: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeviceState:
    """Everything the rules look at for one device, loaded once."""

    device: Device
    policy: UnitPolicy
    now: datetime
    facts: DeviceFacts | None = None
    apps: list[InstalledApp] = field(default_factory=list)
    profiles: list[InstalledProfile] = field(default_factory=list)
    identity_certificates: list[DeviceCertificate] = field(default_factory=list)
    app_policy: AppPolicy | None = None
    expected_profiles: list[ExpectedProfile] | None = None
    os_update_target: OsUpdateTarget | None = None


Rule = Callable[[DeviceState], list[Violation]]


def unauthorized_app(state: DeviceState) -> list[Violation]:
    if state.app_policy is None:
        return []
    return [
        Violation(
            app.identifier,
            Severity.CRITICAL,
            f"未許可アプリ: {app.name or app.identifier} ({app.identifier})"
            f" / Unauthorized app installed: {app.name or app.identifier} ({app.identifier})",
            {
                "identifier": app.identifier,
                "name": app.name,
                "version": app.short_version,
                "reason": state.app_policy.reason(app.identifier),
            },
        )
        for app in state.apps
        if not state.app_policy.permits(app.identifier)
    ]


def passcode_missing(state: DeviceState) -> list[Violation]:
    facts = state.facts
    if facts is None or facts.passcode_present is not False:
        return []
    return [Violation("", Severity.CRITICAL, "パスコード未設定 / No passcode is set")]


def passcode_not_compliant(state: DeviceState) -> list[Violation]:
    facts = state.facts
    if facts is None or facts.passcode_present is not True:
        return []
    if facts.passcode_compliant is False or facts.passcode_compliant_with_profiles is False:
        return [
            Violation(
                "",
                Severity.WARNING,
                "パスコードがポリシーを満たしていない / Passcode does not meet the passcode policy",
                {
                    "passcode_compliant": facts.passcode_compliant,
                    "passcode_compliant_with_profiles": facts.passcode_compliant_with_profiles,
                },
            )
        ]
    return []


def not_supervised(state: DeviceState) -> list[Violation]:
    if not state.policy.require_supervision or state.facts is None or state.facts.is_supervised is not False:
        return []
    return [
        Violation(
            "",
            Severity.WARNING,
            "監視対象外の端末 (所属の方針で監視対象が必須)"
            " / Device is not supervised; its unit requires supervision",
        )
    ]


def os_outdated(state: DeviceState) -> list[Violation]:
    minimum = version_key(state.policy.minimum_os_version)
    current = version_key(state.device.os_version)
    if minimum is None or current is None or current >= minimum:
        return []
    return [
        Violation(
            "",
            Severity.WARNING,
            f"OS {state.device.os_version} が最低バージョン {state.policy.minimum_os_version} より古い"
            f" / OS {state.device.os_version} is older than the minimum {state.policy.minimum_os_version}",
            {"os_version": state.device.os_version, "minimum": state.policy.minimum_os_version},
        )
    ]


def offline_too_long(state: DeviceState) -> list[Violation]:
    last = state.device.last_seen_at or state.device.enrolled_at
    limit = timedelta(hours=state.policy.offline_limit_hours)
    if last is None or state.now - last <= limit:
        return []
    hours = int((state.now - last).total_seconds() // 3600)
    return [
        Violation(
            "",
            Severity.WARNING,
            f"{hours}時間通信なし (上限 {state.policy.offline_limit_hours}時間)"
            f" / Not seen for {hours} hours (limit {state.policy.offline_limit_hours})",
            {"last_seen_at": last.isoformat(), "limit_hours": state.policy.offline_limit_hours},
        )
    ]


def identity_certificate_expiring(state: DeviceState) -> list[Violation]:
    valid = [c for c in state.identity_certificates if c.revoked_at is None]
    if not valid:
        return []
    newest = max(valid, key=lambda c: c.not_after)
    window = timedelta(days=state.policy.certificate_warning_days)
    if newest.not_after - state.now > window:
        return []
    expired = newest.not_after <= state.now
    return [
        Violation(
            newest.fingerprint_sha256,
            Severity.CRITICAL if expired else Severity.WARNING,
            f"端末証明書の有効期限{'切れ' if expired else 'が近い'} ({newest.not_after:%Y-%m-%d})"
            f" / Identity certificate {'expired' if expired else 'expires'} on {newest.not_after:%Y-%m-%d}",
            {"not_after": newest.not_after.isoformat(), "subject": newest.subject},
        )
    ]


def profile_missing_or_outdated(state: DeviceState) -> list[Violation]:
    if state.expected_profiles is None or state.facts is None or state.facts.profiles_at is None:
        return []
    installed = {p.identifier: p for p in state.profiles}
    listed_at = state.facts.profiles_at
    found = []
    for expected in state.expected_profiles:
        if expected.acknowledged_at is not None and listed_at <= expected.acknowledged_at:
            continue  # the last ProfileList predates the install: it cannot judge it
        have = installed.get(expected.identifier)
        name = expected.name or expected.identifier
        if have is None:
            found.append(
                Violation(
                    expected.identifier,
                    Severity.WARNING,
                    f"構成プロファイル未インストール: {name} / Profile missing: {name}",
                    {"identifier": expected.identifier, "reason": "missing"},
                )
            )
        elif expected.payload_uuid is not None and have.payload_uuid != expected.payload_uuid:
            found.append(
                Violation(
                    expected.identifier,
                    Severity.WARNING,
                    f"構成プロファイルが旧版: {name} / Profile outdated: {name}",
                    {
                        "identifier": expected.identifier,
                        "reason": "outdated",
                        "installed_uuid": have.payload_uuid,
                        "expected_uuid": expected.payload_uuid,
                    },
                )
            )
    return found


def android_security_patch_outdated(state: DeviceState) -> list[Violation]:
    minimum = parse_patch_level(state.policy.minimum_android_security_patch)
    reported = state.facts.android_security_patch if state.facts is not None else None
    current = parse_patch_level(reported)
    if minimum is None or current is None or current >= minimum:
        return []
    return [
        Violation(
            "",
            Severity.WARNING,
            f"Androidセキュリティパッチ {reported} が最低"
            f" {state.policy.minimum_android_security_patch} より古い"
            f" / Android security patch {reported} is older than the minimum "
            f"{state.policy.minimum_android_security_patch}",
            {"security_patch": reported, "minimum": state.policy.minimum_android_security_patch},
        )
    ]


def android_not_device_owner(state: DeviceState) -> list[Violation]:
    # Without device owner the agent cannot enforce restrictions, lock task or wipe the whole device.
    if state.facts is None or state.facts.android_device_owner is not False:
        return []
    return [
        Violation(
            "",
            Severity.WARNING,
            "Hikeshiエージェントがデバイスオーナーではない (完全管理外)"
            " / Hikeshi agent is not the device owner (not fully managed)",
        )
    ]


def amapi_policy_not_applied(state: DeviceState) -> list[Violation]:
    """An AMAPI-managed tablet says it does not comply with its policy (its STATUS_REPORT's
    policyCompliant false): one finding per setting or app it names (nonComplianceDetails), or
    one saying so when it named none. A setting still being applied (PENDING) is information."""
    facts = state.facts
    raw = facts.raw_device_information if facts is not None else None
    policy = raw.get("amapi_policy") if isinstance(raw, dict) else None
    if not isinstance(policy, dict) or policy.get("policy_compliant") is not False:
        return []
    details = [d for d in policy.get("non_compliance") or [] if isinstance(d, dict)]
    if not details:
        return [
            Violation(
                "",
                Severity.WARNING,
                "ポリシー未適用 (Android Management API が非準拠と報告)"
                " / Policy not applied (the Android Management API reports the tablet non-compliant)",
                {"applied_policy_version": policy.get("applied_policy_version")},
            )
        ]
    found = []
    for detail in details:
        what = detail.get("packageName") or detail.get("settingName") or detail.get("fieldPath") or ""
        reason = detail.get("specificNonComplianceReason") or detail.get("nonComplianceReason") or "UNKNOWN"
        pending = detail.get("nonComplianceReason") == "PENDING"
        found.append(
            Violation(
                str(what)[:255],
                Severity.INFO if pending else Severity.WARNING,
                f"ポリシー未適用: {what} ({reason}) / Policy not applied: {what} ({reason})"[:500],
                dict(detail),
            )
        )
    return found


def _padded(version: str | None) -> tuple[int, ...] | None:
    key = version_key(version)
    return None if key is None else (*key, 0, 0, 0)[:3]


def os_update_overdue(state: DeviceState) -> list[Violation]:
    """Past the unit's update deadline and still older than its target; an OS version the device
    never reported stays unknown (an info finding), never counted as up to date.

    Info, not warning: a tablet on last month's OS still runs the dispatch apps, so readiness stays
    as its plan's rules make it (the unit's minimum OS version, os_outdated, is the rule that
    breaks a tablet)."""
    target = state.os_update_target
    if target is None or target.due_at is None or state.now < target.due_at:
        return []
    due = f"{target.due_at:%Y-%m-%d %H:%M} UTC"
    current = _padded(state.device.os_version)
    wanted = _padded(target.version)
    details = {
        "os_version": state.device.os_version,
        "target": target.version,
        "due_at": target.due_at.isoformat(),
    }
    if current is None:
        return [
            Violation(
                "",
                Severity.INFO,
                f"OSバージョン不明: 更新期限 {due} までに {target.version} へ更新されたか確認できない"
                f" / OS version unknown: cannot confirm the update to {target.version} due {due}",
                {**details, "reason": "os_version_unknown"},
            )
        ]
    if wanted is None or current >= wanted:
        return []
    return [
        Violation(
            "",
            Severity.INFO,
            f"OS {state.device.os_version} が更新期限 {due} を過ぎても目標 {target.version} より古い"
            f" / OS {state.device.os_version} is behind the target {target.version}, due {due}",
            {**details, "reason": "behind_target"},
        )
    ]


RULES: dict[str, Rule] = {
    "unauthorized_app": unauthorized_app,
    "passcode_missing": passcode_missing,
    "passcode_not_compliant": passcode_not_compliant,
    "not_supervised": not_supervised,
    "os_outdated": os_outdated,
    "offline_too_long": offline_too_long,
    "identity_certificate_expiring": identity_certificate_expiring,
    "profile_missing_or_outdated": profile_missing_or_outdated,
    "android_security_patch_outdated": android_security_patch_outdated,
    "android_not_device_owner": android_not_device_owner,
    "os_update_overdue": os_update_overdue,
    "amapi_policy_not_applied": amapi_policy_not_applied,
}


# What each rule reads besides the device and its unit's policy, so that a check running only
# some rules (the scheduled offline and certificate checks) loads nothing else: least of all the
# profile assignment tree per device.
RULE_NEEDS: dict[str, frozenset[str]] = {
    "unauthorized_app": frozenset({"apps", "app_policy"}),
    "passcode_missing": frozenset({"facts"}),
    "passcode_not_compliant": frozenset({"facts"}),
    "not_supervised": frozenset({"facts"}),
    "os_outdated": frozenset(),
    "offline_too_long": frozenset(),
    "identity_certificate_expiring": frozenset({"identity_certificates"}),
    "profile_missing_or_outdated": frozenset({"facts", "profiles", "expected_profiles"}),
    "android_security_patch_outdated": frozenset({"facts"}),
    "android_not_device_owner": frozenset({"facts"}),
    "os_update_overdue": frozenset({"os_update_target"}),
    "amapi_policy_not_applied": frozenset({"facts"}),
}
