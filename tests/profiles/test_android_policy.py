"""policy_for_device: the desired profiles of an Android device merged into one AMAPI-shaped Policy,
with a version that changes exactly when the policy does."""

from __future__ import annotations

import pytest

from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.ca import ensure_ca
from mdm.ground.models import Device, EnrollmentState
from mdm.services import orgunits
from profiles.android_policy import AndroidPolicyDocument, merge_policy, policy_for_device, policy_version
from profiles.assignment import assign_profile, update_profile_and_apply
from profiles.service import create_profile, create_profile_from_template
from tests.profiles.samples import spec_with

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


@pytest.fixture
def ready(session, settings):
    ensure_ca(session, settings)
    return settings


@pytest.fixture
def units(session):
    hq = orgunits.create_unit(session, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
    station = orgunits.create_unit(
        session, {"kind": "station", "name_ja": "中央署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
    )
    unit = orgunits.create_unit(
        session,
        {"kind": "unit", "name_ja": "中央救急隊", "code": "CEN-A", "parent_id": station.id},
        actor=ADMIN,
    )
    return {"hq": hq, "station": station, "unit": unit}


def _android(session, unit=None) -> Device:
    device = Device(
        platform="android",
        serial_number="R52T00001",
        enrollment_state=EnrollmentState.ENROLLED,
        created_at=clock.now(),
        enrolled_at=clock.now(),
    )
    session.add(device)
    session.flush()
    if unit is not None:
        orgunits.assign_device(session, device, unit, actor=ADMIN)
    return device


def test_a_device_outside_any_unit_gets_the_empty_policy(session, ready):
    document = policy_for_device(session, _android(session))
    assert isinstance(document, AndroidPolicyDocument)
    assert document.policy == {} and document.unsupported == []
    assert document.version == policy_version({})


def test_profiles_along_the_path_merge_with_the_stricter_value_winning(session, ready, units):
    device = _android(session, units["unit"])
    baseline = create_profile_from_template(session, ADMIN, "field-standard", identifier="jp.example.fd.base")
    strict = create_profile_from_template(session, ADMIN, "strict", identifier="jp.example.fd.strict")
    wifi = create_profile_from_template(session, ADMIN, "station-wifi", identifier="jp.example.fd.wifi")
    assign_profile(session, ready, baseline, units["hq"], actor=ADMIN)
    assign_profile(session, ready, strict, units["unit"], actor=ADMIN)
    assign_profile(session, ready, wifi, units["station"], actor=ADMIN)

    document = policy_for_device(session, device)
    policy = document.policy
    # Camera allowed by the baseline, disabled by the strict profile: disabled.
    assert policy["cameraAccess"] == "CAMERA_ACCESS_DISABLED"
    assert policy["screenCaptureDisabled"] is True
    [password] = policy["passwordPolicies"]
    assert password["passwordMinimumLength"] == 8  # strict 8 over baseline 6
    assert password["passwordQuality"] == "ALPHANUMERIC"
    assert password["maximumFailedPasswordsForWipe"] == 6  # fewer attempts is stricter
    assert policy["maximumTimeToLock"] == str(2 * 60_000)
    assert policy["playStoreMode"] == "WHITELIST"
    assert {a["packageName"]: a["installType"] for a in policy["applications"]} == {
        "com.google.android.apps.maps": "AVAILABLE"
    }
    assert policy["deviceConnectivityManagement"]["usbDataAccess"] == "DISALLOW_USB_FILE_TRANSFER"
    [network] = policy["openNetworkConfiguration"]["NetworkConfigurations"]
    assert network["WiFi"]["EAP"]["ClientCertType"] == "KeyPairAlias"
    assert network["WiFi"]["EAP"]["Outer"] == "EAP-TLS"
    # What Android cannot express is said, with the profile it comes from.
    assert any(
        line.startswith("jp.example.fd.base v1 restrictions.1.allow_airdrop:")
        for line in document.unsupported
    )
    # Stable: the same desired set gives the same version; a change gives another.
    assert policy_for_device(session, device).version == document.version
    spec = dict(baseline.spec)
    spec["payloads"] = [dict(p) for p in spec["payloads"]]
    spec["payloads"][0] = {
        **spec["payloads"][0],
        "settings": {**spec["payloads"][0]["settings"], "min_length": 10},
    }
    update_profile_and_apply(session, ready, baseline, spec, actor=ADMIN)
    changed = policy_for_device(session, device)
    assert changed.version != document.version
    assert changed.policy["passwordPolicies"][0]["passwordMinimumLength"] == 10
    # Moving out of the unit drops the unit's strict profile.
    orgunits.assign_device(session, device, units["station"], actor=ADMIN)
    moved = policy_for_device(session, device)
    assert moved.policy["cameraAccess"] == "CAMERA_ACCESS_USER_CHOICE"


def test_a_clash_without_a_stricter_value_keeps_the_first_and_is_reported(session, ready, units):
    device = _android(session, units["unit"])
    chrome = "com.android.chrome"
    for identifier, url in (("jp.example.fd.a", "https://a.example.jp"), ("jp.example.fd.b", "https://b.jp")):
        profile = create_profile(
            session,
            ADMIN,
            spec_with(
                {"kind": "web_content_filter", "settings": {"allowed_urls": [{"url": url, "title": "x"}]}},
                identifier=identifier,
            ),
        )
        assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    policy = policy_for_device(session, device).policy
    [app] = [a for a in policy["applications"] if a["packageName"] == chrome]
    # Allow lists join; both block everything else.
    assert app["managedConfiguration"]["URLAllowlist"] == ["https://a.example.jp", "https://b.jp"]
    assert app["managedConfiguration"]["URLBlocklist"] == ["*"]

    merged: dict = {"autoDateAndTimeZone": "AUTO_DATE_AND_TIME_ZONE_ENFORCED"}
    clashes = merge_policy(merged, {"autoDateAndTimeZone": "AUTO_DATE_AND_TIME_ZONE_USER_CHOICE"})
    assert clashes == ["autoDateAndTimeZone"]
    assert merged["autoDateAndTimeZone"] == "AUTO_DATE_AND_TIME_ZONE_ENFORCED"
