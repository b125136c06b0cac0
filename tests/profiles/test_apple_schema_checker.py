"""The Apple schema walker itself: it must pass conforming payloads and fail broken ones."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import apple_schema
from tests.support.apple_schema import AppleSchemas, check_payload, check_profile, load_schemas, schema_dir
from tests.support.tools import skip_or_fail


@pytest.fixture(scope="module")
def schemas() -> AppleSchemas:
    try:
        return load_schemas()
    except FileNotFoundError as exc:
        skip_or_fail(str(exc))
        raise


def common(payload_type: str) -> dict[str, Any]:
    return {
        "PayloadType": payload_type,
        "PayloadVersion": 1,
        "PayloadIdentifier": f"jp.example.test.{payload_type}",
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": "テスト",
    }


def wifi_payload(**extra: Any) -> dict[str, Any]:
    payload = common("com.apple.wifi.managed")
    payload.update(
        {
            "SSID_STR": "FD-STATION",
            "EncryptionType": "WPA2",
            "EAPClientConfiguration": {
                "AcceptEAPTypes": [13],
                "TLSTrustedServerNames": ["radius.example.jp"],
            },
        }
    )
    payload.update(extra)
    return payload


def mdm_payload() -> dict[str, Any]:
    payload = common("com.apple.mdm")
    payload.update(
        {
            "IdentityCertificateUUID": str(uuid.uuid4()).upper(),
            "Topic": "com.apple.mgmt.External.0a1b2c3d",
            "ServerURL": "https://mdm.example.jp/mdm/connect",
            "CheckInURL": "https://mdm.example.jp/mdm/checkin",
            "SignMessage": True,
            "AccessRights": 8191,
            "CheckOutWhenRemoved": True,
            "ServerCapabilities": ["com.apple.mdm.per-user-connections"],
        }
    )
    return payload


def scep_payload() -> dict[str, Any]:
    payload = common("com.apple.security.scep")
    payload["PayloadContent"] = {
        "URL": "https://mdm.example.jp/scep",
        "Subject": [[["O", "Hikeshi MDM"]], [["CN", "device"]]],
        "Challenge": "secret",
        "Keysize": 2048,
        "Key Type": "RSA",
        "Key Usage": 5,
    }
    return payload


def test_the_schema_folder_is_found_and_indexed(schemas: AppleSchemas) -> None:
    assert (schema_dir() / "TopLevel.yaml").is_file()
    for payload_type in (
        "com.apple.applicationaccess",
        "com.apple.wifi.managed",
        "com.apple.mobiledevice.passwordpolicy",
        "com.apple.security.root",
        "com.apple.security.pkcs1",
        "com.apple.security.scep",
        "com.apple.webcontent-filter",
        "com.apple.mdm",
    ):
        assert payload_type in schemas.payload_types


def test_conforming_payloads_have_no_problems(schemas: AppleSchemas) -> None:
    assert check_payload(wifi_payload(), schemas=schemas) == []
    assert check_payload(mdm_payload(), schemas=schemas, platform="iOS") == []
    assert check_payload(scep_payload(), schemas=schemas, platform="iOS") == []


def test_a_deliberately_wrong_payload_fails_on_every_count(schemas: AppleSchemas) -> None:
    payload = wifi_payload(AutoJoin="yes", FavouriteColour="red")
    del payload["PayloadUUID"]
    problems = check_payload(payload, schemas=schemas)
    assert "com.apple.wifi.managed: unknown key 'FavouriteColour'" in problems
    assert "com.apple.wifi.managed.AutoJoin: expected <boolean>, got str" in problems
    assert "com.apple.wifi.managed: missing required key 'PayloadUUID'" in problems
    assert len(problems) == 3


def test_nested_dictionaries_and_arrays_are_walked(schemas: AppleSchemas) -> None:
    payload = wifi_payload(
        EAPClientConfiguration={
            "AcceptEAPTypes": [13, 99, "13"],
            "TLSTrustedServerNames": "radius.example.jp",
            "Extra": True,
        },
        EncryptionType="WPA4",
        PayloadCertificateUUID="not-a-uuid",
    )
    problems = check_payload(payload, schemas=schemas)
    path = "com.apple.wifi.managed.EAPClientConfiguration"
    assert f"{path}.AcceptEAPTypes[1]: 99 is not one of [13, 17, 18, 21, 23, 25, 43]" in problems
    assert f"{path}.AcceptEAPTypes[2]: expected <integer>, got str" in problems
    assert f"{path}.TLSTrustedServerNames: expected <array>, got str" in problems
    assert f"{path}: unknown key 'Extra'" in problems
    assert any(p.startswith("com.apple.wifi.managed.EncryptionType: 'WPA4' is not one of") for p in problems)
    assert any(
        p.startswith("com.apple.wifi.managed.PayloadCertificateUUID: 'not-a-uuid' does not match")
        for p in problems
    )

    missing = wifi_payload(EAPClientConfiguration={"TLSTrustedServerNames": ["radius.example.jp"]})
    assert check_payload(missing, schemas=schemas) == [f"{path}: missing required key 'AcceptEAPTypes'"]


def test_ranges_repetition_data_and_integers_are_checked(schemas: AppleSchemas) -> None:
    passcode = common("com.apple.mobiledevice.passwordpolicy")
    passcode.update({"maxFailedAttempts": 12, "minLength": True, "maxInactivity": 5})
    problems = check_payload(passcode, schemas=schemas)
    assert problems == [
        "com.apple.mobiledevice.passwordpolicy.maxFailedAttempts: 12 is outside 2..11",
        "com.apple.mobiledevice.passwordpolicy.minLength: expected <integer>, got bool",
    ]

    scep = scep_payload()
    scep["PayloadContent"]["Subject"] = [[["CN"]]]
    scep["PayloadContent"]["CAFingerprint"] = "00ff"
    scep["PayloadContent"]["Keysize"] = 1000
    problems = check_payload(scep, schemas=schemas)
    content = "com.apple.security.scep.PayloadContent"
    assert f"{content}.Subject[0][0]: has 1 items, expected 2..2" in problems
    assert f"{content}.CAFingerprint: expected <data>, got str" in problems
    assert f"{content}.Keysize: 1000 is not one of [1024, 2048, 4096]" in problems

    root = common("com.apple.security.root")
    assert check_payload(root, schemas=schemas) == [
        "com.apple.security.root: missing required key 'PayloadContent'"
    ]
    root["PayloadContent"] = b"\x30\x82"
    assert check_payload(root, schemas=schemas) == []


def test_unknown_payload_types_and_platform_gaps_are_reported(schemas: AppleSchemas) -> None:
    assert check_payload(common("com.example.nothing"), schemas=schemas) == [
        "com.example.nothing: unknown payload type"
    ]
    assert check_payload({"SSID_STR": "x"}, schemas=schemas) == [
        "payload: PayloadType is missing or not a string"
    ]
    # allowCloudNotes is a macOS-only restriction: fine in general, flagged for iOS.
    restrictions = common("com.apple.applicationaccess")
    restrictions["allowCloudNotes"] = False
    assert check_payload(restrictions, schemas=schemas) == []
    assert check_payload(restrictions, schemas=schemas, platform="iOS") == [
        "com.apple.applicationaccess.allowCloudNotes: not available on iOS"
    ]


def test_check_profile_checks_top_level_and_each_payload(schemas: AppleSchemas) -> None:
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": "jp.example.enrollment",
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": "登録",
        "PayloadContent": [scep_payload(), mdm_payload()],
    }
    assert check_profile(profile, schemas=schemas, platform="iOS") == []

    broken = dict(profile, PayloadVersion=2, Unexpected="x")
    broken["PayloadContent"] = [scep_payload(), wifi_payload(HIDDEN_NETWORK=1)]
    del broken["PayloadIdentifier"]
    problems = check_profile(broken, schemas=schemas)
    assert sorted(problems) == sorted(
        [
            "TopLevel: unknown key 'Unexpected'",
            "TopLevel.PayloadVersion: 2 is not one of [1]",
            "TopLevel: missing required key 'PayloadIdentifier'",
            "PayloadContent[1] com.apple.wifi.managed.HIDDEN_NETWORK: expected <boolean>, got int",
        ]
    )


def test_the_schema_folder_can_be_named_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = apple_schema.schema_dir_or_skip()
    monkeypatch.setenv(apple_schema.SCHEMA_ENV, str(default.parents[1]))  # .../apple-device-management/mdm
    assert schema_dir() == default.parents[1] / "profiles" or schema_dir() == default
    monkeypatch.setenv(apple_schema.SCHEMA_ENV, str(default.parents[2]))  # .../apple-device-management
    assert schema_dir() == default
    monkeypatch.setenv(apple_schema.SCHEMA_ENV, str(default))
    assert schema_dir() == default
    monkeypatch.setenv(apple_schema.SCHEMA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError):
        schema_dir()
