"""Each compliance rule on its own: what it finds, and that it finds nothing without its data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mdm.ground.models import Device, DeviceCertificate, DeviceFacts, InstalledApp, InstalledProfile, Severity
from mdm.services.compliance.rules import (
    DeviceState,
    identity_certificate_expiring,
    not_supervised,
    offline_too_long,
    os_outdated,
    passcode_missing,
    passcode_not_compliant,
    profile_missing_or_outdated,
    unauthorized_app,
)
from mdm.services.compliance.sources import AppPolicy, ExpectedProfile, app_policy_from_specs
from mdm.services.unit_policy import UnitPolicy

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def state(**kwargs) -> DeviceState:
    device = kwargs.pop("device", None) or Device(id=1, os_version="17.5.1", last_seen_at=NOW)
    return DeviceState(device=device, policy=kwargs.pop("policy", UnitPolicy()), now=NOW, **kwargs)


def app(identifier: str) -> InstalledApp:
    return InstalledApp(identifier=identifier, name=identifier.split(".")[-1], short_version="1.0")


def test_unauthorized_app_block_list_and_allow_list():
    apps = [app("jp.fire.triage"), app("com.example.game"), app("com.apple.Pages")]
    assert unauthorized_app(state(apps=apps)) == []  # no policy, no finding
    blocked = unauthorized_app(
        state(apps=apps, app_policy=AppPolicy(blocked=frozenset({"com.example.game"})))
    )
    assert [(v.subject, v.details["reason"], v.severity) for v in blocked] == [
        ("com.example.game", "blocked", Severity.CRITICAL)
    ]
    assert "com.example.game" in blocked[0].message
    allow = AppPolicy(allowed=frozenset({"jp.fire.triage"}))
    # Apple's own apps are not the fleet's to list.
    assert [v.subject for v in unauthorized_app(state(apps=apps, app_policy=allow))] == ["com.example.game"]


def test_app_policy_from_profile_specs_merges_like_the_device():
    def spec(**settings):
        return {
            "payloads": [{"kind": "restrictions", "settings": settings}, {"kind": "wifi", "settings": {}}]
        }

    one = spec(app_allow_list=[{"bundle_id": "a"}, {"bundle_id": "b"}])
    two = spec(app_allow_list=[{"bundle_id": "b"}, {"bundle_id": "c"}])
    three = spec(app_block_list=[{"bundle_id": "x", "package_name": "com.x"}])
    policy = app_policy_from_specs([one, two, three])
    assert policy == AppPolicy(frozenset({"b"}), frozenset({"x"}))
    assert app_policy_from_specs([spec(allow_camera=False)]) is None
    assert app_policy_from_specs([three], platform="android") == AppPolicy(None, frozenset({"com.x"}))


def test_passcode_rules():
    assert passcode_missing(state()) == []
    missing = state(facts=DeviceFacts(passcode_present=False))
    assert [v.severity for v in passcode_missing(missing)] == [Severity.CRITICAL]
    assert passcode_not_compliant(missing) == []
    weak = state(
        facts=DeviceFacts(
            passcode_present=True, passcode_compliant=True, passcode_compliant_with_profiles=False
        )
    )
    assert len(passcode_not_compliant(weak)) == 1 and passcode_missing(weak) == []
    good = state(
        facts=DeviceFacts(
            passcode_present=True, passcode_compliant=True, passcode_compliant_with_profiles=True
        )
    )
    assert passcode_not_compliant(good) == []


def test_supervision_only_when_the_unit_requires_it():
    facts = DeviceFacts(is_supervised=False)
    assert not_supervised(state(facts=facts)) == []
    assert len(not_supervised(state(facts=facts, policy=UnitPolicy(require_supervision=True)))) == 1
    assert (
        not_supervised(
            state(facts=DeviceFacts(is_supervised=True), policy=UnitPolicy(require_supervision=True))
        )
        == []
    )


def test_os_older_than_minimum_compares_numbers_not_text():
    policy = UnitPolicy(minimum_os_version="17.10")
    assert len(os_outdated(state(policy=policy))) == 1  # 17.5.1 < 17.10
    newer = Device(id=1, os_version="18.0")
    assert os_outdated(state(device=newer, policy=policy)) == []
    assert os_outdated(state()) == []  # no minimum set


def test_offline_limit():
    seen = Device(id=1, last_seen_at=NOW - timedelta(hours=24))
    assert offline_too_long(state(device=seen)) == []
    gone = Device(id=1, last_seen_at=NOW - timedelta(hours=25))
    [violation] = offline_too_long(state(device=gone))
    assert "25 hours" in violation.message
    assert len(offline_too_long(state(device=seen, policy=UnitPolicy(offline_limit_hours=12)))) == 1


def test_identity_certificate_expiring():
    def cert(days: float) -> DeviceCertificate:
        return DeviceCertificate(
            fingerprint_sha256=f"fp{days}", subject="CN=ipad", not_after=NOW + timedelta(days=days)
        )

    assert identity_certificate_expiring(state(identity_certificates=[cert(31)])) == []
    [soon] = identity_certificate_expiring(state(identity_certificates=[cert(29)]))
    assert soon.severity == Severity.WARNING
    [gone] = identity_certificate_expiring(state(identity_certificates=[cert(-1)]))
    assert gone.severity == Severity.CRITICAL
    # A renewed identity beside the old one is what counts.
    assert identity_certificate_expiring(state(identity_certificates=[cert(2), cert(300)])) == []


def test_profile_missing_or_outdated():
    expected = [ExpectedProfile("jp.fire.restrictions", "UUID-2"), ExpectedProfile("jp.fire.wifi")]
    installed = [InstalledProfile(identifier="jp.fire.restrictions", payload_uuid="UUID-1")]
    facts = DeviceFacts(profiles_at=NOW)
    found = profile_missing_or_outdated(state(facts=facts, profiles=installed, expected_profiles=expected))
    assert sorted((v.subject, v.details["reason"]) for v in found) == [
        ("jp.fire.restrictions", "outdated"),
        ("jp.fire.wifi", "missing"),
    ]
    # Before the first ProfileList answer nothing is known to be missing.
    assert profile_missing_or_outdated(state(expected_profiles=expected)) == []
