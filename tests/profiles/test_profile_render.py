"""Apple and Android renderings: schema conformance, EAP-TLS wiring, reported gaps, determinism."""

from __future__ import annotations

import base64
import json
import plistlib
from typing import Any

import pytest
from cryptography import x509

from profiles.android_render import render_android, wifi_key_alias
from profiles.apple_render import render_apple
from profiles.rendering import ChallengeRequest, RenderError
from profiles.spec import derived_uuid, payload_uuid, profile_uuid, validate_spec
from profiles.templates import TEMPLATES, list_templates, template_spec
from tests.profiles.samples import SCEP_URL, every_setting_spec, render_context, spec_with, station_wifi
from tests.support.apple_schema import AppleSchemas, load_schemas
from tests.support.tools import skip_or_fail


@pytest.fixture(scope="module")
def schemas() -> AppleSchemas:
    try:
        return load_schemas()
    except FileNotFoundError as exc:
        skip_or_fail(str(exc))
        raise


def apple_document(spec: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    result = render_apple(spec, kwargs.pop("context", None) or render_context(), **kwargs)
    assert isinstance(result.content, bytes)
    return plistlib.loads(result.content)


def by_type(document: dict[str, Any], payload_type: str) -> list[dict[str, Any]]:
    return [p for p in document["PayloadContent"] if p["PayloadType"] == payload_type]


def assert_conforms(document: dict[str, Any], schemas: AppleSchemas) -> None:
    for payload in document["PayloadContent"]:
        assert schemas.check_payload(payload, platform="iOS") == [], payload["PayloadType"]
    assert schemas.check_profile(document, platform="iOS") == []


def test_there_are_four_templates_with_japanese_names() -> None:
    names = {t.slug: t.name_ja for t in list_templates()}
    assert names == {
        "field-standard": "現場タブレット標準",
        "strict": "厳格",
        "station-wifi": "署内Wi-Fi",
        "myna-kyukyu": "マイナ救急",
    }


@pytest.mark.parametrize("slug", sorted(TEMPLATES))
def test_every_template_renders_for_apple_and_conforms_to_the_schema(
    slug: str, schemas: AppleSchemas
) -> None:
    spec = TEMPLATES[slug].spec
    result = render_apple(spec, render_context())
    document = plistlib.loads(result.content)
    assert document["PayloadDisplayName"] == spec["name_ja"]
    assert document["PayloadDescription"].startswith(spec["name_en"])
    assert document["PayloadIdentifier"] == spec["identifier"]
    assert document["PayloadContent"]
    assert_conforms(document, schemas)
    for payload in document["PayloadContent"]:
        assert payload["PayloadIdentifier"].startswith(spec["identifier"] + ".")
        assert payload["PayloadVersion"] == 1
        assert payload["PayloadOrganization"] == "Hikeshi MDM"


@pytest.mark.parametrize("slug", sorted(TEMPLATES))
def test_every_template_renders_for_android(slug: str) -> None:
    result = render_android(TEMPLATES[slug].spec, render_context())
    policy = result.content
    assert isinstance(policy, dict) and policy
    assert json.loads(json.dumps(policy, ensure_ascii=False)) == policy
    if slug in ("field-standard", "strict", "myna-kyukyu"):
        assert policy["passwordPolicies"][0]["passwordMinimumLength"] >= 6
        assert "maximumTimeToLock" in policy
    if slug in ("station-wifi", "myna-kyukyu"):
        network = policy["openNetworkConfiguration"]["NetworkConfigurations"][0]
        eap = network["WiFi"]["EAP"]
        assert eap["ClientCertType"] == "KeyPairAlias"
        assert eap["ClientCertKeyPairAlias"] == wifi_key_alias(network["GUID"])


def test_the_field_baseline_template_says_what_the_issue_asks() -> None:
    document = apple_document(TEMPLATES["field-standard"].spec)
    [passcode] = by_type(document, "com.apple.mobiledevice.passwordpolicy")
    assert passcode["minLength"] >= 6 and passcode["maxInactivity"] == 5 and passcode["forcePIN"] is True
    [restrictions] = by_type(document, "com.apple.applicationaccess")
    assert restrictions["allowUIAppInstallation"] is False
    assert restrictions["allowAirDrop"] is False
    assert restrictions["allowCamera"] is True
    strict = apple_document(TEMPLATES["strict"].spec)
    [restrictions] = by_type(strict, "com.apple.applicationaccess")
    assert restrictions["allowCamera"] is False and restrictions["allowListedAppBundleIDs"]
    myna = TEMPLATES["myna-kyukyu"].spec
    assert "クライアント分離" in myna["description"] and "access points" in myna["description"]
    android = render_android(myna, render_context()).content
    assert android["cameraAccess"] == "CAMERA_ACCESS_USER_CHOICE"
    assert android["deviceConnectivityManagement"] == {"usbDataAccess": "DISALLOW_USB_FILE_TRANSFER"}


def test_eap_tls_references_an_identity_and_anchors_in_the_same_profile(schemas: AppleSchemas) -> None:
    context = render_context(device_common_name="SERIAL-0001", scep_ca_fingerprint=b"\x01" * 20)
    document = apple_document(TEMPLATES["station-wifi"].spec, context=context)
    assert_conforms(document, schemas)
    [wifi] = by_type(document, "com.apple.wifi.managed")
    [identity] = by_type(document, "com.apple.security.scep")
    [anchor] = by_type(document, "com.apple.security.root")
    eap = wifi["EAPClientConfiguration"]
    assert eap["AcceptEAPTypes"] == [13]
    assert eap["TLSTrustedServerNames"] == ["radius.fd.example.jp"]
    assert eap["PayloadCertificateAnchorUUID"] == [anchor["PayloadUUID"]]
    assert wifi["PayloadCertificateUUID"] == identity["PayloadUUID"]
    assert "Password" not in wifi and "UserPassword" not in eap
    assert wifi["EncryptionType"] == "WPA2"
    scep = identity["PayloadContent"]
    assert scep["URL"] == SCEP_URL
    assert scep["Challenge"] == "one-time-challenge"
    assert scep["Subject"] == [[["O", "Hikeshi MDM"]], [["CN", "SERIAL-0001"]]]
    assert scep["Keysize"] == 2048 and scep["KeyIsExtractable"] is False
    assert scep["CAFingerprint"] == b"\x01" * 20
    assert (
        x509.load_der_x509_certificate(anchor["PayloadContent"]).subject.rfc4514_string()
        == "CN=Hikeshi Built-in CA"
    )
    # Payloads another payload points to come before it.
    order = [p["PayloadUUID"] for p in document["PayloadContent"]]
    assert order.index(identity["PayloadUUID"]) < order.index(wifi["PayloadUUID"])


def test_the_scep_challenge_can_come_from_a_provider() -> None:
    seen: list[ChallengeRequest] = []

    def provider(request: ChallengeRequest) -> str:
        seen.append(request)
        return f"challenge-for-{request.payload_key}"

    document = apple_document(TEMPLATES["station-wifi"].spec, context=render_context(scep_challenge=provider))
    [identity] = by_type(document, "com.apple.security.scep")
    assert identity["PayloadContent"]["Challenge"] == "challenge-for-station-wifi"
    assert seen == [ChallengeRequest("jp.hikeshi.template.station-wifi", "station-wifi", SCEP_URL)]
    no_challenge = apple_document(TEMPLATES["station-wifi"].spec, context=render_context(scep_challenge=None))
    assert "Challenge" not in by_type(no_challenge, "com.apple.security.scep")[0]["PayloadContent"]


def test_a_profile_using_every_setting_conforms_and_wires_references(schemas: AppleSchemas) -> None:
    spec = validate_spec(every_setting_spec())
    result = render_apple(spec, render_context())
    document = plistlib.loads(result.content)
    assert_conforms(document, schemas)

    [restrictions] = by_type(document, "com.apple.applicationaccess")
    assert restrictions["allowListedAppBundleIDs"] == [
        "com.apple.Maps",
        "jp.example.fd.ios-only",
        "jp.example.fd.hanso",
    ]
    assert restrictions["allowFilesUSBDriveAccess"] is False
    assert restrictions["allowHostPairing"] is False
    assert restrictions["allowUSBRestrictedMode"] is True
    unsupported = {(u["payload"], u["field"]) for u in result.unsupported}
    assert unsupported == {
        ("restrictions.1", "usb_data_access"),
        ("restrictions.1", "required_apps"),
        ("restrictions.1", "app_allow_list[2]"),
    }

    station = next(p for p in by_type(document, "com.apple.wifi.managed") if p["SSID_STR"] == "FD-STATION")
    assert station["EncryptionType"] == "WPA3" and station["HIDDEN_NETWORK"] is True
    assert station["ProxyType"] == "Manual" and station["ProxyServerPort"] == 8080
    assert station["EAPClientConfiguration"]["UserName"] == "tablet-001"
    scep = by_type(document, "com.apple.security.scep")[0]["PayloadContent"]
    assert scep["URL"] == "https://scep.fd.example.jp/scep" and scep["Keysize"] == 4096
    assert scep["Subject"][1] == [["CN", "tablet-001"]]
    all_uuids = {p["PayloadUUID"] for p in document["PayloadContent"]}
    anchors = station["EAPClientConfiguration"]["PayloadCertificateAnchorUUID"]
    assert len(anchors) == 3 and set(anchors) <= all_uuids  # other root + RADIUS root + intermediate
    assert station["PayloadCertificateUUID"] in all_uuids
    # RADIUS root and other root (station), the built-in CA (FD-NOPROXY trusts it).
    assert len(by_type(document, "com.apple.security.root")) == 3
    assert len(by_type(document, "com.apple.security.pkcs1")) == 1

    guest = next(p for p in by_type(document, "com.apple.wifi.managed") if p["SSID_STR"] == "FD-GUEST")
    assert guest["Password"] == "correct horse battery" and guest["AutoJoin"] is False
    assert guest["ProxyType"] == "Auto" and "EAPClientConfiguration" not in guest
    [passcode] = by_type(document, "com.apple.mobiledevice.passwordpolicy")
    assert passcode["maxFailedAttempts"] == 10 and passcode["minComplexChars"] == 1
    [web] = by_type(document, "com.apple.webcontent-filter")
    assert web["AllowListBookmarks"][0] == {"URL": "https://www.fdma.go.jp/", "Title": "消防庁"}
    notes = {(n["payload"], n["field"]) for n in result.notes}
    assert ("web_content_filter.1", "allowed_urls") in notes
    assert any("supervised" in n["note"] for n in result.notes if n["payload"] == "web_content_filter.1")
    assert ("passcode.1", "auto_lock_minutes") in notes


def test_payload_uuids_are_stable_and_the_profile_uuid_follows_the_version() -> None:
    spec = TEMPLATES["myna-kyukyu"].spec
    context = render_context()
    v1 = apple_document(spec, version=1, context=context)
    v2 = apple_document(spec, version=2, context=context)
    assert [p["PayloadUUID"] for p in v1["PayloadContent"]] == [
        p["PayloadUUID"] for p in v2["PayloadContent"]
    ]
    assert v1["PayloadUUID"] == profile_uuid(spec["identifier"], 1) != v2["PayloadUUID"]
    wifi_uuid = payload_uuid(spec["identifier"], "wifi", "ambulance-wifi")
    [wifi] = by_type(v1, "com.apple.wifi.managed")
    assert wifi["PayloadUUID"] == wifi_uuid
    assert by_type(v1, "com.apple.security.scep")[0]["PayloadUUID"] == derived_uuid(wifi_uuid, "identity")
    # UUIDs stored with the profile win over derived ones.
    uuids = {p["key"]: f"00000000-0000-0000-0000-00000000000{i}" for i, p in enumerate(spec["payloads"])}
    stored = apple_document(spec, payload_uuids=uuids, context=context)
    assert {p["PayloadUUID"] for p in stored["PayloadContent"]} >= set(uuids.values())


def test_rendering_is_deterministic() -> None:
    spec = validate_spec(every_setting_spec())
    context = render_context()
    assert render_apple(spec, context).content == render_apple(spec, context).content
    assert render_android(spec, context).content == render_android(spec, context).content


def test_android_policy_shape_for_every_setting() -> None:
    spec = validate_spec(every_setting_spec())
    result = render_android(spec, render_context())
    policy = result.content
    assert policy["cameraAccess"] == "CAMERA_ACCESS_DISABLED"
    assert policy["screenCaptureDisabled"] is True
    assert policy["installAppsDisabled"] is True
    assert policy["uninstallAppsDisabled"] is True
    assert policy["bluetoothConfigDisabled"] is True
    assert policy["modifyAccountsDisabled"] is True
    assert policy["factoryResetDisabled"] is True
    assert policy["deviceConnectivityManagement"] == {"usbDataAccess": "DISALLOW_USB_DATA_TRANSFER"}
    assert policy["mountPhysicalMediaDisabled"] is True
    assert policy["playStoreMode"] == "WHITELIST"
    apps = {a["packageName"]: a for a in policy["applications"]}
    assert apps["com.google.android.apps.maps"]["installType"] == "AVAILABLE"
    assert apps["jp.example.fd.android_only"]["installType"] == "AVAILABLE"
    assert apps["jp.example.fd.hanso"]["installType"] == "FORCE_INSTALLED"
    assert apps["com.android.chrome"]["managedConfiguration"] == {
        "URLBlocklist": ["*"],
        "URLAllowlist": ["https://www.fdma.go.jp/", "https://example.jp/"],
    }
    [password] = policy["passwordPolicies"]
    assert password == {
        "passwordScope": "SCOPE_DEVICE",
        "passwordMinimumLength": 8,
        "passwordQuality": "COMPLEX",
        "passwordMinimumSymbols": 1,
        "passwordMinimumLetters": 1,
        "passwordMinimumNumeric": 1,
        "passwordMinimumUpperCase": 0,
        "passwordMinimumLowerCase": 0,
        "passwordMinimumNonLetter": 1,
        "passwordHistoryLength": 5,
        "maximumFailedPasswordsForWipe": 10,
        "passwordExpirationTimeout": "7776000s",
    }
    assert policy["maximumTimeToLock"] == "180000"

    onc = policy["openNetworkConfiguration"]
    assert onc["Type"] == "UnencryptedConfiguration"
    networks = {n["Name"]: n for n in onc["NetworkConfigurations"]}
    station = networks["FD-STATION"]
    eap = station["WiFi"]["EAP"]
    assert station["Type"] == "WiFi" and station["WiFi"]["Security"] == "WPA-EAP"
    assert station["WiFi"]["HiddenSSID"] is True
    # The key pair the device generates (no Certificates entry could hold a key made on the device).
    assert eap["Outer"] == "EAP-TLS" and eap["ClientCertType"] == "KeyPairAlias"
    assert eap["ClientCertKeyPairAlias"] == "hikeshi-wifi-" + station["GUID"].lower()
    assert "ClientCertRef" not in eap
    assert eap["DomainSuffixMatch"] == ["radius.fd.example.jp", "radius.fd.example.jp"]
    assert eap["Identity"] == "tablet-001"
    certificate_guids = {c["GUID"] for c in onc["Certificates"]}
    assert set(eap["ServerCARefs"]) <= certificate_guids and len(eap["ServerCARefs"]) == 3
    for certificate in onc["Certificates"]:
        assert certificate["Type"] == "Authority"
        x509.load_der_x509_certificate(base64.b64decode(certificate["X509"]))
    assert station["ProxySettings"] == {
        "Type": "Manual",
        "Manual": {"HTTPProxy": {"Host": "proxy.fd.example.jp", "Port": 8080}},
    }
    guest = networks["FD-GUEST"]
    assert guest["WiFi"]["Security"] == "WPA-PSK" and guest["WiFi"]["Passphrase"] == "correct horse battery"
    assert guest["ProxySettings"] == {"Type": "PAC", "PAC": "http://wpad.fd.example.jp/proxy.pac"}
    assert "ProxySettings" not in networks["FD-NOPROXY"]

    unsupported = {(u["payload"], u["field"]) for u in result.unsupported}
    assert unsupported == {
        ("restrictions.1", "allow_in_app_purchases"),
        ("restrictions.1", "allow_airdrop"),
        ("restrictions.1", "app_allow_list[1]"),
        ("station", "security"),
        ("station", "trusted_server_names[2]"),
        # Its own SCEP server: the Android agent's certificate comes from the built-in CA.
        ("station", "scep.url"),
        ("wifi.2", "security"),
        ("radius-ca", "certificates"),
    }
    assert all(u["reason"] for u in result.unsupported)
    alias = eap["ClientCertKeyPairAlias"]
    assert any(n["field"] == "certificate_source" and alias in n["note"] for n in result.notes)


def test_android_reports_airdrop_instead_of_dropping_it() -> None:
    spec = validate_spec(spec_with({"kind": "restrictions", "settings": {"allow_airdrop": False}}))
    result = render_android(spec, render_context())
    assert result.content == {}
    [entry] = result.unsupported
    assert entry["payload"] == "restrictions.1" and entry["field"] == "allow_airdrop"
    assert "AirDrop" in entry["reason"]


def test_block_lists_and_the_app_store_on_android() -> None:
    spec = validate_spec(
        spec_with(
            {
                "kind": "restrictions",
                "settings": {
                    "app_block_list": [
                        {"package_name": "com.android.chrome", "bundle_id": "com.apple.mobilesafari"}
                    ]
                },
            },
            {
                "kind": "web_content_filter",
                "settings": {"allowed_urls": [{"url": "https://www.fdma.go.jp/"}]},
            },
        )
    )
    android = render_android(spec, render_context())
    assert android.content["playStoreMode"] == "BLACKLIST"
    assert android.content["applications"] == [
        {"packageName": "com.android.chrome", "installType": "BLOCKED"}
    ]
    assert {(u["payload"], u["field"]) for u in android.unsupported} == {
        ("web_content_filter.1", "allowed_urls")
    }
    apple = plistlib.loads(render_apple(spec, render_context()).content)
    assert by_type(apple, "com.apple.applicationaccess")[0]["blockedAppBundleIDs"] == [
        "com.apple.mobilesafari"
    ]

    no_store = validate_spec(spec_with({"kind": "restrictions", "settings": {"allow_app_store": False}}))
    result = render_android(no_store, render_context())
    assert result.content == {"playStoreMode": "WHITELIST"}
    assert result.notes and result.notes[0]["field"] == "allow_app_store"


def test_an_allow_list_without_ios_ids_is_never_rendered_empty() -> None:
    spec = validate_spec(
        spec_with(
            {
                "kind": "restrictions",
                "settings": {"app_allow_list": [{"package_name": "jp.example.only_android"}]},
            }
        )
    )
    result = render_apple(spec, render_context())
    [restrictions] = by_type(plistlib.loads(result.content), "com.apple.applicationaccess")
    assert "allowListedAppBundleIDs" not in restrictions
    assert {u["field"] for u in result.unsupported} == {"app_allow_list[0]", "app_allow_list"}


def test_missing_server_pieces_raise_render_error() -> None:
    spec = TEMPLATES["station-wifi"].spec
    with pytest.raises(RenderError, match="scep_url"):
        render_apple(spec, render_context(scep_url=None))
    with pytest.raises(RenderError, match="ca_certificate_pem"):
        render_apple(spec, render_context(ca_certificate_pem=None))
    with pytest.raises(RenderError, match="ca_certificate_pem"):
        render_android(spec, render_context(ca_certificate_pem=None))


def test_a_template_can_be_copied_under_another_identifier() -> None:
    spec = template_spec("station-wifi", identifier="jp.lg.example-city.fd.station-wifi", name_ja="本署Wi-Fi")
    assert spec["identifier"] == "jp.lg.example-city.fd.station-wifi"
    assert spec["name_ja"] == "本署Wi-Fi" and spec["name_en"] == "Station Wi-Fi"
    document = apple_document(spec)
    assert all(
        p["PayloadIdentifier"].startswith("jp.lg.example-city.fd.station-wifi.")
        for p in document["PayloadContent"]
    )
    assert TEMPLATES["station-wifi"].spec["identifier"] == "jp.hikeshi.template.station-wifi"
    with pytest.raises(KeyError):
        template_spec("no-such-template")


def test_wifi_password_only_where_personal() -> None:
    spec = validate_spec(
        spec_with({"kind": "wifi", "settings": station_wifi(ssid="A", certificate_source="scep")})
    )
    document = apple_document(spec)
    [wifi] = by_type(document, "com.apple.wifi.managed")
    assert "Password" not in wifi
    assert by_type(document, "com.apple.security.scep")[0]["PayloadContent"]["URL"] == SCEP_URL


def test_payload_identifiers_and_uuids_are_unique_within_a_profile() -> None:
    spec = validate_spec(every_setting_spec())
    document = apple_document(spec)
    identifiers = [p["PayloadIdentifier"] for p in document["PayloadContent"]]
    uuids = [p["PayloadUUID"] for p in document["PayloadContent"]]
    assert len(set(identifiers)) == len(identifiers)
    assert len(set(uuids)) == len(uuids)
    assert "jp.example.fd.test.wifi.station" in identifiers
    assert "jp.example.fd.test.wifi.station.identity" in identifiers
    assert "jp.example.fd.test.restrictions.1" in identifiers
