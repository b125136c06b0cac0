"""The platform-neutral profile spec: bad payloads are rejected with the field named."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from marshmallow import ValidationError

from profiles.payloads import KINDS
from profiles.spec import payload_identifier, validate_spec
from tests.profiles.samples import intermediate_ca, spec_with, station_wifi
from tests.support.pki import issue_cert, make_ca, pem


def settings_errors(spec: dict[str, Any], index: int = 0) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        validate_spec(spec)
    return info.value.messages["payloads"][index]["settings"]


def test_a_valid_spec_is_normalised_with_keys_and_defaults() -> None:
    spec = validate_spec(
        spec_with(
            {"kind": "passcode", "settings": {"min_length": 6}},
            {"kind": "wifi", "settings": station_wifi()},
            {"kind": "wifi", "key": "ambulance", "settings": station_wifi(ssid="FD-AMB")},
            {"kind": "wifi", "settings": station_wifi(ssid="FD-3")},
        )
    )
    assert [p["key"] for p in spec["payloads"]] == ["passcode.1", "wifi.1", "ambulance", "wifi.3"]
    assert spec["description"] == ""
    assert spec["payloads"][0]["settings"] == {
        "min_length": 6,
        "require_alphanumeric": False,
        "allow_simple": False,
    }
    assert spec["payloads"][1]["settings"]["auto_join"] is True
    assert spec["payloads"][1]["settings"]["hidden"] is False
    assert payload_identifier(spec["identifier"], spec["payloads"][1]) == "jp.example.fd.test.wifi.1"
    assert payload_identifier(spec["identifier"], spec["payloads"][2]) == "jp.example.fd.test.wifi.ambulance"
    # The stored form validates to itself: saving it again changes nothing.
    assert validate_spec(copy.deepcopy(spec)) == spec


def test_an_unknown_restriction_is_rejected_by_name() -> None:
    errors = settings_errors(spec_with({"kind": "restrictions", "settings": {"allow_teleport": False}}))
    assert errors == {"allow_teleport": ["Unknown field."]}


def test_a_40_byte_ssid_is_rejected_naming_ssid() -> None:
    ssid = "消防署" * 4 + "ABCD"  # 12 kanji x 3 bytes + 4 = 40 bytes, only 16 characters
    assert len(ssid.encode()) == 40
    errors = settings_errors(spec_with({"kind": "wifi", "settings": station_wifi(ssid=ssid)}))
    assert list(errors) == ["ssid"]
    assert "40 bytes" in errors["ssid"][0]


def test_a_32_byte_multibyte_ssid_is_accepted() -> None:
    ssid = "消防" * 5 + "AB"  # 10 kanji x 3 bytes + 2 = 32 bytes
    assert len(ssid.encode()) == 32
    spec = validate_spec(spec_with({"kind": "wifi", "settings": station_wifi(ssid=ssid)}))
    assert spec["payloads"][0]["settings"]["ssid"] == ssid


def test_eap_tls_without_a_certificate_source_is_rejected_naming_the_field() -> None:
    errors = settings_errors(spec_with({"kind": "wifi", "settings": station_wifi(certificate_source=None)}))
    assert list(errors) == ["certificate_source"]
    assert "scep" in errors["certificate_source"][0]


def test_passcode_length_zero_is_rejected_naming_min_length() -> None:
    errors = settings_errors(spec_with({"kind": "passcode", "settings": {"min_length": 0}}))
    assert list(errors) == ["min_length"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"min_length": 17}, "min_length"),
        ({"min_length": 6, "max_failed_attempts": 1}, "max_failed_attempts"),
        ({"min_length": 6, "max_failed_attempts": 12}, "max_failed_attempts"),
        ({"min_length": 6, "auto_lock_minutes": 0}, "auto_lock_minutes"),
        ({"min_length": "6"}, "min_length"),
        ({"min_length": True}, "min_length"),
        ({"min_length": 6, "require_alphanumeric": "yes"}, "require_alphanumeric"),
        ({"min_length": 4, "min_complex_chars": 3, "require_alphanumeric": True}, "min_length"),
        ({}, "min_length"),
    ],
)
def test_bad_passcode_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    errors = settings_errors(spec_with({"kind": "passcode", "settings": settings}))
    assert field in errors


def test_allow_list_and_block_list_together_are_rejected() -> None:
    app = {"bundle_id": "jp.example.app"}
    errors = settings_errors(
        spec_with({"kind": "restrictions", "settings": {"app_allow_list": [app], "app_block_list": [app]}})
    )
    assert set(errors) == {"app_allow_list", "app_block_list"}


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"app_allow_list": [{"name": "no ids"}]}, "app_allow_list"),
        ({"app_block_list": [{"bundle_id": "not a bundle id"}]}, "app_block_list"),
        ({"app_block_list": [{"package_name": "jp.x"}, {"package_name": "jp.x"}]}, "app_block_list"),
        (
            {
                "app_block_list": [{"package_name": "jp.x.app"}],
                "required_apps": [{"package_name": "jp.x.app"}],
            },
            "required_apps",
        ),
        ({"usb_data_access": "sometimes"}, "usb_data_access"),
        ({"allow_camera": 0}, "allow_camera"),
    ],
)
def test_bad_restrictions_name_the_field(settings: dict[str, Any], field: str) -> None:
    errors = settings_errors(spec_with({"kind": "restrictions", "settings": settings}))
    assert field in errors


def test_an_empty_restrictions_payload_is_rejected() -> None:
    errors = settings_errors(spec_with({"kind": "restrictions", "settings": {}}))
    assert "_schema" in errors


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (station_wifi(password="secret-password"), "password"),
        (station_wifi(trusted_server_names=None), "trusted_server_names"),
        (station_wifi(trust_builtin_ca=None), "trusted_root_certificates"),
        (station_wifi(eap_type="PEAP"), "eap_type"),
        (station_wifi(scep={"key_size": 2048}), "scep"),
        (station_wifi(certificate_source="scep", scep={"key_size": 1024}), "scep"),
        (station_wifi(trusted_server_names=["not a name"]), "trusted_server_names"),
        (station_wifi(security="wep"), "security"),
        (station_wifi(proxy={"type": "manual", "host": "proxy.example.jp"}), "proxy"),
        (station_wifi(proxy={"type": "auto", "pac_url": "ftp://x"}), "proxy"),
        ({"ssid": "HOME", "security": "wpa2_personal"}, "password"),
        ({"ssid": "HOME", "security": "wpa2_personal", "password": "short"}, "password"),
        (
            {
                "ssid": "HOME",
                "security": "wpa2_personal",
                "password": "long-enough",
                "certificate_source": "scep",
            },
            "certificate_source",
        ),
        ({"security": "wpa2_personal", "password": "long-enough"}, "ssid"),
    ],
)
def test_bad_wifi_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    errors = settings_errors(spec_with({"kind": "wifi", "settings": settings}))
    assert field in errors


def test_proxy_errors_name_the_missing_part() -> None:
    errors = settings_errors(
        spec_with(
            {
                "kind": "wifi",
                "settings": station_wifi(proxy={"type": "manual", "host": "proxy.fd.example.jp"}),
            }
        )
    )
    assert errors == {"proxy": {"port": ["Required for a manual proxy."]}}


def test_spec_level_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        validate_spec({"identifier": "not reverse dns", "name_ja": "", "payloads": []})
    messages = info.value.messages
    assert set(messages) >= {"identifier", "name_ja", "name_en", "payloads"}


def test_an_unknown_payload_kind_is_rejected_naming_kind() -> None:
    with pytest.raises(ValidationError) as info:
        validate_spec(spec_with({"kind": "vpn", "settings": {}}))
    assert "kind" in info.value.messages["payloads"][0]


def test_single_kinds_appear_once_and_keys_are_unique() -> None:
    with pytest.raises(ValidationError) as info:
        validate_spec(
            spec_with(
                {"kind": "passcode", "settings": {"min_length": 6}},
                {"kind": "passcode", "settings": {"min_length": 8}},
                {"kind": "wifi", "key": "net", "settings": station_wifi()},
                {"kind": "wifi", "key": "net", "settings": station_wifi(ssid="OTHER")},
                {"kind": "wifi", "settings": station_wifi(ssid="OTHER")},
            )
        )
    payloads = info.value.messages["payloads"]
    assert "kind" in payloads[1]
    assert "key" in payloads[3]
    assert "ssid" in payloads[4]["settings"]


def test_a_reference_to_a_missing_certificates_payload_is_rejected() -> None:
    settings = station_wifi(trust_builtin_ca=None, trusted_certificates_payload="radius-ca")
    errors = settings_errors(spec_with({"kind": "wifi", "settings": settings}))
    assert "trusted_certificates_payload" in errors


def test_certificates_must_be_parseable_ca_certificates() -> None:
    ca, ca_key = make_ca("Spec Test Root")
    leaf, _ = issue_cert(ca, ca_key, "radius.fd.example.jp")
    errors = settings_errors(
        spec_with(
            {
                "kind": "certificates",
                "settings": {
                    "certificates": [pem(ca).decode(), pem(leaf).decode(), "-----BEGIN CERTIFICATE-----x"]
                },
            }
        )
    )
    problems = errors["certificates"]
    assert 0 not in problems
    assert "not a CA certificate" in problems[1][0]
    assert "PEM" in problems[2][0]


def test_root_and_intermediate_certificates_are_accepted() -> None:
    root, root_key = make_ca("Spec Test Root")
    intermediate = intermediate_ca(root, root_key, "Spec Test Intermediate")
    spec = validate_spec(
        spec_with({"kind": "certificates", "settings": {"certificates": [pem(root).decode(), intermediate]}})
    )
    assert len(spec["payloads"][0]["settings"]["certificates"]) == 2


def test_web_content_filter_needs_http_urls_and_fills_titles() -> None:
    spec = validate_spec(
        spec_with(
            {"kind": "web_content_filter", "settings": {"allowed_urls": [{"url": "https://www.fdma.go.jp/"}]}}
        )
    )
    assert spec["payloads"][0]["settings"]["allowed_urls"] == [
        {"url": "https://www.fdma.go.jp/", "title": "www.fdma.go.jp"}
    ]
    errors = settings_errors(
        spec_with(
            {"kind": "web_content_filter", "settings": {"allowed_urls": [{"url": "javascript:alert(1)"}]}}
        )
    )
    assert "allowed_urls" in errors


def test_every_kind_is_registered_with_titles() -> None:
    assert set(KINDS) == {"restrictions", "wifi", "passcode", "certificates", "web_content_filter"}
    for kind in KINDS.values():
        assert kind.title_ja and kind.title_en


def test_chosen_keys_cannot_collide_with_generated_ones() -> None:
    with pytest.raises(ValidationError) as info:
        validate_spec(
            spec_with(
                {"kind": "wifi", "key": "station.identity", "settings": station_wifi(ssid="B")},
                {"kind": "wifi", "key": "1", "settings": station_wifi(ssid="C")},
            )
        )
    payloads = info.value.messages["payloads"]
    assert "key" in payloads[0] and "key" in payloads[1]
    with pytest.raises(ValidationError) as info:
        validate_spec(spec_with({"kind": "wifi", "key": "passcode.1", "settings": station_wifi()}))
    assert "key" in info.value.messages["payloads"][0]
    spec = validate_spec(spec_with({"kind": "wifi", "key": "wifi.7", "settings": station_wifi()}))
    assert spec["payloads"][0]["key"] == "wifi.7"
