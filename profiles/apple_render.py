"""Render a profile spec as an Apple configuration profile (.mobileconfig, XML plist, unsigned).

Keys and types follow Apple's schema (shared/apple-device-management/mdm/profiles/*.yaml); the
tests walk every rendered payload against it. Signing is not done here: the caller signs the bytes
the same way as the enrollment profile.

EAP-TLS identities. iOS lets a Wi-Fi payload use only an identity from the same profile
(PayloadCertificateUUID), so the MDM enrollment identity in the enrollment profile cannot be
referenced. Both certificate sources are therefore rendered as a com.apple.security.scep payload
next to the Wi-Fi payload: "enrollment_identity" asks the built-in CA (RenderContext.scep_url) for a
Wi-Fi identity, so RADIUS can trust the same CA that issued the enrollment identity; "scep" does the
same against the spec's own SCEP URL when it gives one. The challenge comes from RenderContext at
render time, never from the stored spec. The SCEP payload's UUID is stable across versions, so a
new profile version does not make the device enrol a new certificate.
"""

from __future__ import annotations

import hashlib
import plistlib
from collections.abc import Callable, Mapping
from typing import Any

from profiles.payloads.common import certificate_der, common_name, is_self_signed, load_certificate
from profiles.rendering import APPLE, ChallengeRequest, RenderContext, RenderError, RenderResult, SpecBuilder
from profiles.secret_settings import reveal_spec
from profiles.spec import assign_payload_uuids, derived_uuid, payload_identifier, profile_uuid

RESTRICTION_KEYS = {
    "allow_camera": "allowCamera",
    "allow_screenshots": "allowScreenShot",
    "allow_app_installation": "allowAppInstallation",
    "allow_app_removal": "allowAppRemoval",
    # allowUIAppInstallation hides the App Store; MDM can still install apps.
    "allow_app_store": "allowUIAppInstallation",
    "allow_in_app_purchases": "allowInAppPurchases",
    "allow_airdrop": "allowAirDrop",
    "allow_bluetooth_modification": "allowBluetoothModification",
    "allow_account_modification": "allowAccountModification",
    "allow_erase_content_and_settings": "allowEraseContentAndSettings",
}

# Restriction keys iOS enforces on supervised devices only (supportedOS.iOS.supervised in the schema).
SUPERVISED_ONLY = {
    "allowAccountModification",
    "allowAirDrop",
    "allowAppInstallation",
    "allowAppRemoval",
    "allowBluetoothModification",
    "allowEraseContentAndSettings",
    "allowFilesUSBDriveAccess",
    "allowHostPairing",
    "allowUIAppInstallation",
    "allowUSBRestrictedMode",
    "allowListedAppBundleIDs",
    "blockedAppBundleIDs",
}

ENCRYPTION_TYPE = {
    "wpa2_personal": "WPA2",
    "wpa3_personal": "WPA3",
    "wpa2_enterprise": "WPA2",
    "wpa3_enterprise": "WPA3",
}

EAP_TLS = 13
# Digital signature: all a TLS client certificate needs.
KEY_USAGE_SIGNING = 1
# The auto-lock values an iPad offers; others are rounded by the device.
IPAD_AUTO_LOCK_MINUTES = (2, 5, 10, 15)


def render_apple(
    spec: Mapping[str, Any],
    context: RenderContext,
    *,
    version: int = 1,
    payload_uuids: Mapping[str, str] | None = None,
) -> RenderResult:
    """Render a validated spec (profiles.spec.validate_spec) for Apple devices.

    `payload_uuids` (key → UUID, from the Profile row) overrides the derived UUIDs; `version` picks
    the profile-level PayloadUUID. Same input, same bytes.
    """
    result = RenderResult(platform=APPLE, content=b"")
    spec = reveal_spec(spec, context.secret_key)
    builder = _AppleBuilder(spec, context, dict(payload_uuids or assign_payload_uuids(spec)), result)
    document = builder.profile(version)
    result.content = plistlib.dumps(document, fmt=plistlib.FMT_XML, sort_keys=True)
    return result


class _AppleBuilder(SpecBuilder):
    def profile(self, version: int) -> dict[str, Any]:
        identifier = self.spec["identifier"]
        content: list[dict[str, Any]] = []
        renderers: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
            "restrictions": self.restrictions,
            "wifi": self.wifi,
            "passcode": self.passcode,
            "certificates": self.certificates,
            "web_content_filter": self.web_content_filter,
        }
        for payload in self.spec["payloads"]:
            content.extend(renderers[payload["kind"]](payload))
        description = self.spec["name_en"]
        if self.spec.get("description"):
            description += "\n\n" + self.spec["description"]
        return {
            "PayloadType": "Configuration",
            "PayloadVersion": 1,
            "PayloadIdentifier": identifier,
            "PayloadUUID": profile_uuid(identifier, version),
            "PayloadDisplayName": self.spec["name_ja"],
            "PayloadDescription": description,
            "PayloadOrganization": self.context.organization,
            "PayloadContent": content,
        }

    # -- helpers -------------------------------------------------------------------------------

    def base(
        self, payload_type: str, identifier: str, uuid: str, name_ja: str, description_en: str
    ) -> dict[str, Any]:
        return {
            "PayloadType": payload_type,
            "PayloadVersion": 1,
            "PayloadIdentifier": identifier,
            "PayloadUUID": uuid,
            "PayloadDisplayName": name_ja,
            "PayloadDescription": description_en,
            "PayloadOrganization": self.context.organization,
        }

    def certificate_payload(self, pem: str, identifier: str, uuid: str) -> dict[str, Any]:
        cert = load_certificate(pem)
        name = common_name(cert)
        payload_type = "com.apple.security.root" if is_self_signed(cert) else "com.apple.security.pkcs1"
        payload = self.base(payload_type, identifier, uuid, f"証明書（{name}）", f"Certificate {name}")
        payload["PayloadCertificateFileName"] = f"{_file_safe(name)}.cer"
        payload["PayloadContent"] = certificate_der(pem)
        return payload

    # -- kinds ---------------------------------------------------------------------------------

    def restrictions(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        settings = payload["settings"]
        key = payload["key"]
        body: dict[str, Any] = {}
        for name, apple_key in RESTRICTION_KEYS.items():
            if name in settings:
                body[apple_key] = settings[name]
        usb = settings.get("usb_data_access")
        if usb == "allowed":
            body["allowFilesUSBDriveAccess"] = True
            body["allowHostPairing"] = True
        elif usb in ("no_file_transfer", "no_data"):
            # No USB drives in Files, no pairing with a computer (the file-transfer path), and
            # USB restricted mode kept on so accessories cannot talk to a locked device.
            body["allowFilesUSBDriveAccess"] = False
            body["allowHostPairing"] = False
            body["allowUSBRestrictedMode"] = True
            if usb == "no_data":
                self.result.report_unsupported(
                    key,
                    "usb_data_access",
                    "iOS cannot turn off USB data for accessories on an unlocked device; rendered as "
                    "no USB storage, no computer pairing and USB restricted mode.",
                )
        self._app_lists(key, settings, body)
        identifier = payload_identifier(self.spec["identifier"], payload)
        apple = self.base(
            "com.apple.applicationaccess", identifier, self.uuids[key], "機能制限", "Restrictions"
        )
        apple.update(body)
        supervised = sorted(k for k in body if k in SUPERVISED_ONLY)
        if supervised:
            self.result.note(key, "*", "Enforced on supervised devices only: " + ", ".join(supervised) + ".")
        return [apple]

    def _app_lists(self, key: str, settings: Mapping[str, Any], body: dict[str, Any]) -> None:
        required = settings.get("required_apps", [])
        if required:
            self.result.report_unsupported(
                key,
                "required_apps",
                "iOS installs apps with the InstallApplication command, not with a profile; "
                "the apps are only added to the allow list here.",
            )
        for list_name, apple_key, extra in (
            ("app_allow_list", "allowListedAppBundleIDs", required),
            ("app_block_list", "blockedAppBundleIDs", []),
        ):
            if list_name not in settings:
                continue
            bundle_ids: list[str] = []
            for index, app in enumerate(settings[list_name]):
                if "bundle_id" in app:
                    bundle_ids.append(app["bundle_id"])
                else:
                    self.result.report_unsupported(
                        key,
                        f"{list_name}[{index}]",
                        f"{app.get('name') or app.get('package_name')} has no iOS bundle ID.",
                    )
            for app in extra:
                if "bundle_id" in app and app["bundle_id"] not in bundle_ids:
                    bundle_ids.append(app["bundle_id"])
            if bundle_ids:
                body[apple_key] = bundle_ids
            else:
                # An empty allow list would hide every app: never render one by accident.
                self.result.report_unsupported(key, list_name, "No app in the list has an iOS bundle ID.")

    def wifi(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        settings = payload["settings"]
        key = payload["key"]
        identifier = payload_identifier(self.spec["identifier"], payload)
        uuid = self.uuids[key]
        ssid = settings["ssid"]
        wifi = self.base(
            "com.apple.wifi.managed", identifier, uuid, f"Wi-Fi（{ssid}）", f"Wi-Fi network {ssid}"
        )
        wifi.update(
            {
                "SSID_STR": ssid,
                "HIDDEN_NETWORK": settings["hidden"],
                "AutoJoin": settings["auto_join"],
                "EncryptionType": ENCRYPTION_TYPE[settings["security"]],
            }
        )
        extra: list[dict[str, Any]] = []
        if settings.get("password"):
            wifi["Password"] = settings["password"]
        if settings.get("eap_type") == "EAP-TLS":
            anchors, anchor_uuids = self._anchors(payload, identifier, uuid)
            identity = self._scep_identity(payload, identifier, uuid)
            extra.extend(anchors)
            extra.append(identity)
            eap: dict[str, Any] = {
                "AcceptEAPTypes": [EAP_TLS],
                "TLSTrustedServerNames": list(settings["trusted_server_names"]),
                "PayloadCertificateAnchorUUID": anchor_uuids,
                "TLSMinimumVersion": "1.2",
            }
            if "identity" in settings:
                eap["UserName"] = settings["identity"]
            wifi["EAPClientConfiguration"] = eap
            wifi["PayloadCertificateUUID"] = identity["PayloadUUID"]
        wifi.update(_apple_proxy(settings.get("proxy")))
        return [*extra, wifi]

    def _anchors(
        self, payload: Mapping[str, Any], identifier: str, uuid: str
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Certificate payloads to add for this network, and the UUIDs of every anchor it trusts."""
        settings = payload["settings"]
        pems = list(settings.get("trusted_root_certificates", []))
        labels = ["anchor:" + _fp(pem) for pem in pems]
        if settings.get("trust_builtin_ca"):
            pem = self.context.ca_certificate_pem
            if not pem:
                raise RenderError("RenderContext.ca_certificate_pem is needed for trust_builtin_ca.")
            pems.append(pem)
            labels.append("builtin-ca:" + _fp(pem))
        added = [
            self.certificate_payload(pem, f"{identifier}.anchor.{index}", derived_uuid(uuid, label))
            for index, (pem, label) in enumerate(zip(pems, labels, strict=True), start=1)
        ]
        anchor_uuids = [p["PayloadUUID"] for p in added]
        # A certificates payload elsewhere in the profile: trust the payloads it renders to.
        ref = settings.get("trusted_certificates_payload")
        if ref is not None:
            certs_uuid = self.uuids[ref]
            anchor_uuids += [
                derived_uuid(certs_uuid, "cert:" + _fp(pem))
                for pem in self.payloads_by_key[ref]["settings"]["certificates"]
            ]
        return added, anchor_uuids

    def _scep_identity(self, payload: Mapping[str, Any], identifier: str, uuid: str) -> dict[str, Any]:
        settings = payload["settings"]
        key = payload["key"]
        scep = settings.get("scep", {})
        url = scep.get("url") or self.context.scep_url
        if not url:
            raise RenderError("RenderContext.scep_url is needed for an EAP-TLS identity.")
        cn = scep.get("common_name") or self.context.device_common_name
        if cn is None:
            cn = f"{self.spec['identifier']} {key}"[:64]
            self.result.note(
                key,
                "certificate_source",
                "Rendered without a device name: every device asks for the same certificate subject. "
                "Pass RenderContext.device_common_name when rendering for one device.",
            )
        if settings["certificate_source"] == "enrollment_identity":
            self.result.note(
                key,
                "certificate_source",
                "iOS cannot use the enrollment identity from another profile; the device requests a "
                "Wi-Fi identity from the same built-in CA through SCEP.",
            )
        content: dict[str, Any] = {
            "URL": url,
            "Subject": [[["O", self.context.organization]], [["CN", cn]]],
            "Keysize": scep.get("key_size", 2048),
            "Key Type": "RSA",
            "Key Usage": KEY_USAGE_SIGNING,
            "KeyIsExtractable": False,
        }
        challenge = self.context.challenge_for(ChallengeRequest(self.spec["identifier"], key, url))
        if challenge is not None:
            content["Challenge"] = challenge
        if self.context.scep_ca_fingerprint is not None and url == self.context.scep_url:
            content["CAFingerprint"] = self.context.scep_ca_fingerprint
        identity = self.base(
            "com.apple.security.scep",
            f"{identifier}.identity",
            derived_uuid(uuid, "identity"),
            f"Wi-Fi 端末証明書（{settings['ssid']}）",
            f"Device certificate for Wi-Fi {settings['ssid']} (EAP-TLS)",
        )
        identity["PayloadContent"] = content
        return identity

    def passcode(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        settings = payload["settings"]
        key = payload["key"]
        body: dict[str, Any] = {
            "forcePIN": True,
            "minLength": settings["min_length"],
            "requireAlphanumeric": settings["require_alphanumeric"],
            "allowSimple": settings["allow_simple"],
        }
        for name, apple_key in (
            ("min_complex_chars", "minComplexChars"),
            ("max_age_days", "maxPINAgeInDays"),
            ("history", "pinHistory"),
            ("auto_lock_minutes", "maxInactivity"),
            ("max_failed_attempts", "maxFailedAttempts"),
        ):
            if name in settings:
                body[apple_key] = settings[name]
        minutes = settings.get("auto_lock_minutes")
        if minutes is not None and minutes not in IPAD_AUTO_LOCK_MINUTES:
            self.result.note(
                key,
                "auto_lock_minutes",
                f"iPad offers 2, 5, 10 or 15 minutes; {minutes} is rounded by the device.",
            )
        identifier = payload_identifier(self.spec["identifier"], payload)
        apple = self.base(
            "com.apple.mobiledevice.passwordpolicy",
            identifier,
            self.uuids[key],
            "パスコード",
            "Passcode policy",
        )
        apple.update(body)
        return [apple]

    def certificates(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        identifier = payload_identifier(self.spec["identifier"], payload)
        uuid = self.uuids[payload["key"]]
        return [
            self.certificate_payload(pem, f"{identifier}.{index}", derived_uuid(uuid, "cert:" + _fp(pem)))
            for index, pem in enumerate(payload["settings"]["certificates"], start=1)
        ]

    def web_content_filter(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        key = payload["key"]
        identifier = payload_identifier(self.spec["identifier"], payload)
        apple = self.base(
            "com.apple.webcontent-filter",
            identifier,
            self.uuids[key],
            "Webコンテンツフィルタ",
            "Web content filter",
        )
        apple.update(
            {
                "FilterType": "BuiltIn",
                "AutoFilterEnabled": False,
                "AllowListBookmarks": [
                    {"URL": site["url"], "Title": site["title"]}
                    for site in payload["settings"]["allowed_urls"]
                ],
            }
        )
        self.result.note(key, "allowed_urls", "Enforced on supervised devices only (iOS 14.5 or later).")
        return [apple]


def _apple_proxy(proxy: Mapping[str, Any] | None) -> dict[str, Any]:
    if proxy is None:
        return {}
    if proxy["type"] == "manual":
        return {"ProxyType": "Manual", "ProxyServer": proxy["host"], "ProxyServerPort": proxy["port"]}
    if proxy["type"] == "auto":
        return {"ProxyType": "Auto", "ProxyPACURL": proxy["pac_url"]}
    return {"ProxyType": "None"}


def _fp(pem: str) -> str:
    return hashlib.sha256(certificate_der(pem)).hexdigest()


def _file_safe(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return cleaned[:64] or "certificate"
