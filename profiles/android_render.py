"""Render a profile spec as a policy in the shape of the Android Management API `Policy` resource.

Field names and enum values are those of the AMAPI reference (enterprises.policies): e.g.
`cameraAccess`, `playStoreMode` (WHITELIST / BLACKLIST are still the wire values), `applications`
with `installType`, `passwordPolicies`, `deviceConnectivityManagement.usbDataAccess` and
`openNetworkConfiguration` (ONC, the subset AMAPI supports).

EAP-TLS: the ONC network uses ClientCertType "KeyPairAlias" with ClientCertKeyPairAlias naming a
key pair the device owner generates itself (DevicePolicyManager.generateKeyPair, granted to Wi-Fi
with grantKeyPairToWifiAuth). A ClientCertRef would have to point to an ONC Certificates entry
carrying the private key (PKCS#12), which would mean a key made off the device and a shared
policy holding it. The certificate is per device, so it is not in the shared policy: the agent
asks the built-in CA for it (docs/android-agent-protocol.md, "Wi-Fi client certificates").
`notes` names the alias.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from profiles.payloads.common import certificate_der
from profiles.payloads.wifi import PERSONAL
from profiles.rendering import ANDROID, RenderContext, RenderError, RenderResult, SpecBuilder
from profiles.secret_settings import reveal_spec
from profiles.spec import assign_payload_uuids, derived_uuid

# allow_* setting → (Policy field, value when allowed, value when not allowed)
RESTRICTION_FIELDS: dict[str, tuple[str, Any, Any]] = {
    "allow_camera": ("cameraAccess", "CAMERA_ACCESS_USER_CHOICE", "CAMERA_ACCESS_DISABLED"),
    "allow_screenshots": ("screenCaptureDisabled", False, True),
    "allow_app_installation": ("installAppsDisabled", False, True),
    "allow_app_removal": ("uninstallAppsDisabled", False, True),
    "allow_bluetooth_modification": ("bluetoothConfigDisabled", False, True),
    "allow_account_modification": ("modifyAccountsDisabled", False, True),
    "allow_erase_content_and_settings": ("factoryResetDisabled", False, True),
}

UNSUPPORTED_RESTRICTIONS = {
    "allow_in_app_purchases": "The Android Management API Policy has no in-app purchase control.",
    "allow_airdrop": "AirDrop is an Apple feature; the Policy resource has no equivalent for nearby sharing.",
}

USB_DATA_ACCESS = {
    "allowed": "ALLOW_USB_DATA_TRANSFER",
    "no_file_transfer": "DISALLOW_USB_FILE_TRANSFER",
    "no_data": "DISALLOW_USB_DATA_TRANSFER",
}

CHROME = "com.android.chrome"
# The KeyChain alias of a network's EAP-TLS key pair: stable per network GUID, so a policy change
# that keeps the network keeps its certificate.
WIFI_KEY_ALIAS_PREFIX = "hikeshi-wifi-"


def wifi_key_alias(network_guid: str) -> str:
    return WIFI_KEY_ALIAS_PREFIX + network_guid.lower()


def wifi_key_aliases(policy: Mapping[str, Any]) -> set[str]:
    """The key pair aliases a policy's EAP-TLS networks expect the device to hold."""
    onc = policy.get("openNetworkConfiguration") or {}
    aliases = set()
    for network in onc.get("NetworkConfigurations") or []:
        eap = (network.get("WiFi") or {}).get("EAP") or {}
        if eap.get("ClientCertType") == "KeyPairAlias" and eap.get("ClientCertKeyPairAlias"):
            aliases.add(str(eap["ClientCertKeyPairAlias"]))
    return aliases


def render_android(
    spec: Mapping[str, Any],
    context: RenderContext,
    *,
    version: int = 1,
    payload_uuids: Mapping[str, str] | None = None,
) -> RenderResult:
    """Render a validated spec (profiles.spec.validate_spec) as an AMAPI-shaped Policy dict.

    `version` is accepted for symmetry with render_apple; the Policy carries no version of ours.
    """
    result = RenderResult(platform=ANDROID, content={})
    spec = reveal_spec(spec, context.secret_key)
    builder = _AndroidBuilder(spec, context, dict(payload_uuids or assign_payload_uuids(spec)), result)
    result.content = builder.policy()
    return result


class _AndroidBuilder(SpecBuilder):
    def begin(self) -> None:
        self.policy_fields: dict[str, Any] = {}
        self.applications: dict[str, dict[str, Any]] = {}
        self.networks: list[dict[str, Any]] = []
        self.onc_certificates: dict[str, dict[str, Any]] = {}

    def policy(self) -> dict[str, Any]:
        renderers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "restrictions": self.restrictions,
            "wifi": self.wifi,
            "passcode": self.passcode,
            "certificates": self.certificates,
            "web_content_filter": self.web_content_filter,
        }
        # The web filter configures Chrome, so it goes after the app lists that may block Chrome.
        ordered = sorted(self.spec["payloads"], key=lambda p: p["kind"] == "web_content_filter")
        for payload in ordered:
            renderers[payload["kind"]](payload)
        policy = dict(self.policy_fields)
        if self.applications:
            policy["applications"] = list(self.applications.values())
        if self.networks or self.onc_certificates:
            onc: dict[str, Any] = {"Type": "UnencryptedConfiguration"}
            if self.networks:
                onc["NetworkConfigurations"] = self.networks
            if self.onc_certificates:
                onc["Certificates"] = list(self.onc_certificates.values())
            policy["openNetworkConfiguration"] = onc
        return policy

    # -- helpers -------------------------------------------------------------------------------

    def application(self, package_name: str) -> dict[str, Any]:
        return self.applications.setdefault(package_name, {"packageName": package_name})

    def authority(self, pem: str, guid: str) -> str:
        self.onc_certificates.setdefault(
            guid,
            {
                "GUID": guid,
                "Type": "Authority",
                "X509": base64.b64encode(certificate_der(pem)).decode("ascii"),
            },
        )
        return guid

    # -- kinds ---------------------------------------------------------------------------------

    def restrictions(self, payload: Mapping[str, Any]) -> None:
        settings = payload["settings"]
        key = payload["key"]
        for name, (policy_field, allowed, denied) in RESTRICTION_FIELDS.items():
            if name in settings:
                self.policy_fields[policy_field] = allowed if settings[name] else denied
        for name, reason in UNSUPPORTED_RESTRICTIONS.items():
            if name in settings:
                self.result.report_unsupported(key, name, reason)
        usb = settings.get("usb_data_access")
        if usb is not None:
            self.policy_fields["deviceConnectivityManagement"] = {"usbDataAccess": USB_DATA_ACCESS[usb]}
            # External storage (USB drives, SD cards) is part of "no file transfer".
            self.policy_fields["mountPhysicalMediaDisabled"] = usb != "allowed"
        self._apps(key, settings)

    def _apps(self, key: str, settings: Mapping[str, Any]) -> None:
        install_types = (
            ("app_allow_list", "AVAILABLE"),
            ("app_block_list", "BLOCKED"),
            ("required_apps", "FORCE_INSTALLED"),
        )
        for list_name, install_type in install_types:
            for index, app in enumerate(settings.get(list_name, [])):
                package = app.get("package_name")
                if package is None:
                    self.result.report_unsupported(
                        key,
                        f"{list_name}[{index}]",
                        f"{app.get('name') or app.get('bundle_id')} has no Android package name.",
                    )
                    continue
                self.application(package)["installType"] = install_type
        if "app_allow_list" in settings:
            self.policy_fields["playStoreMode"] = "WHITELIST"
        elif settings.get("allow_app_store") is False:
            self.policy_fields["playStoreMode"] = "WHITELIST"
            self.result.note(
                key,
                "allow_app_store",
                "Android cannot hide Google Play alone: playStoreMode WHITELIST offers only the "
                "policy's apps and removes apps that are not in the policy.",
            )
        elif "app_block_list" in settings or settings.get("allow_app_store") is True:
            self.policy_fields["playStoreMode"] = "BLACKLIST"

    def wifi(self, payload: Mapping[str, Any]) -> None:
        settings = payload["settings"]
        key = payload["key"]
        guid = self.uuids[key]
        ssid = settings["ssid"]
        security = settings["security"]
        wifi: dict[str, Any] = {
            "SSID": ssid,
            "HiddenSSID": settings["hidden"],
            "AutoConnect": settings["auto_join"],
        }
        if security in ("wpa3_personal", "wpa3_enterprise"):
            self.result.report_unsupported(
                key,
                "security",
                "The ONC subset of the Android Management API cannot require WPA3 only; the network is "
                "rendered as WPA2/WPA3 (the device may also join WPA2).",
            )
        if security in PERSONAL:
            wifi["Security"] = "WPA-PSK"
            if settings.get("password"):
                wifi["Passphrase"] = settings["password"]
        else:
            wifi["Security"] = "WPA-EAP"
            wifi["EAP"] = self._eap(payload, guid)
        network: dict[str, Any] = {"GUID": guid, "Name": ssid, "Type": "WiFi", "WiFi": wifi}
        proxy = _onc_proxy(settings.get("proxy"))
        if proxy is not None:
            network["ProxySettings"] = proxy
        self.networks.append(network)

    def _eap(self, payload: Mapping[str, Any], guid: str) -> dict[str, Any]:
        settings = payload["settings"]
        key = payload["key"]
        server_cas = [
            self.authority(pem, derived_uuid(guid, "anchor:" + _fp(pem)))
            for pem in settings.get("trusted_root_certificates", [])
        ]
        if settings.get("trust_builtin_ca"):
            pem = self.context.ca_certificate_pem
            if not pem:
                raise RenderError("RenderContext.ca_certificate_pem is needed for trust_builtin_ca.")
            server_cas.append(self.authority(pem, derived_uuid(guid, "builtin-ca:" + _fp(pem))))
        ref = settings.get("trusted_certificates_payload")
        if ref is not None:
            certs_uuid = self.uuids[ref]
            server_cas += [
                self.authority(pem, derived_uuid(certs_uuid, "cert:" + _fp(pem)))
                for pem in self.payloads_by_key[ref]["settings"]["certificates"]
            ]
        suffixes = []
        for index, name in enumerate(settings["trusted_server_names"]):
            suffix = name[2:] if name.startswith("*.") else name
            if "*" in suffix:
                self.result.report_unsupported(
                    key,
                    f"trusted_server_names[{index}]",
                    f"{name}: Android matches server names by domain suffix and has no inner wildcards.",
                )
                continue
            suffixes.append(suffix)
        alias = wifi_key_alias(guid)
        if (settings.get("scep") or {}).get("url"):
            self.result.report_unsupported(
                key,
                "scep.url",
                "The Android agent gets its Wi-Fi certificate from Hikeshi's built-in CA, not from "
                "another SCEP server: the RADIUS server must trust the built-in CA.",
            )
        self.result.note(
            key,
            "certificate_source",
            f"The device generates its EAP-TLS key as key pair {alias} and gets its certificate "
            "from the built-in CA; it is per device, so it is not part of this policy.",
        )
        eap: dict[str, Any] = {
            "Outer": "EAP-TLS",
            "ClientCertType": "KeyPairAlias",
            "ClientCertKeyPairAlias": alias,
            "ServerCARefs": server_cas,
            "DomainSuffixMatch": suffixes,
        }
        if "identity" in settings:
            eap["Identity"] = settings["identity"]
        return eap

    def passcode(self, payload: Mapping[str, Any]) -> None:
        settings = payload["settings"]
        requirements: dict[str, Any] = {
            "passwordScope": "SCOPE_DEVICE",
            "passwordMinimumLength": settings["min_length"],
        }
        complex_chars = settings.get("min_complex_chars", 0)
        if complex_chars:
            alnum = 1 if settings["require_alphanumeric"] else 0
            requirements.update(
                {
                    "passwordQuality": "COMPLEX",
                    "passwordMinimumSymbols": complex_chars,
                    "passwordMinimumLetters": alnum,
                    "passwordMinimumNumeric": alnum,
                    "passwordMinimumUpperCase": 0,
                    "passwordMinimumLowerCase": 0,
                    "passwordMinimumNonLetter": complex_chars,
                }
            )
        elif settings["require_alphanumeric"]:
            requirements["passwordQuality"] = "ALPHANUMERIC"
        elif not settings["allow_simple"]:
            requirements["passwordQuality"] = "NUMERIC_COMPLEX"
        else:
            requirements["passwordQuality"] = "NUMERIC"
        if "history" in settings:
            requirements["passwordHistoryLength"] = settings["history"]
        if "max_failed_attempts" in settings:
            requirements["maximumFailedPasswordsForWipe"] = settings["max_failed_attempts"]
        if "max_age_days" in settings:
            requirements["passwordExpirationTimeout"] = f"{settings['max_age_days'] * 86400}s"
        self.policy_fields["passwordPolicies"] = [requirements]
        if "auto_lock_minutes" in settings:
            # int64 fields are strings in the Policy JSON.
            self.policy_fields["maximumTimeToLock"] = str(settings["auto_lock_minutes"] * 60_000)

    def certificates(self, payload: Mapping[str, Any]) -> None:
        uuid = self.uuids[payload["key"]]
        for pem in payload["settings"]["certificates"]:
            self.authority(pem, derived_uuid(uuid, "cert:" + _fp(pem)))
        self.result.report_unsupported(
            payload["key"],
            "certificates",
            "The Policy resource installs CA certificates only as ONC authorities for Wi-Fi server "
            "checks, not as device-wide trusted roots.",
        )

    def web_content_filter(self, payload: Mapping[str, Any]) -> None:
        key = payload["key"]
        chrome = self.applications.get(CHROME)
        if chrome is not None and chrome.get("installType") == "BLOCKED":
            self.result.report_unsupported(
                key,
                "allowed_urls",
                "The URL allow list is enforced through Chrome, which this profile blocks.",
            )
            return
        chrome = self.application(CHROME)
        chrome["managedConfiguration"] = {
            "URLBlocklist": ["*"],
            "URLAllowlist": [site["url"] for site in payload["settings"]["allowed_urls"]],
        }
        self.result.note(
            key,
            "allowed_urls",
            "Enforced in Chrome through its managed configuration (URLAllowlist); block other browsers "
            "with an app allow or block list.",
        )


def _onc_proxy(proxy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if proxy is None or proxy["type"] == "none":
        return None
    if proxy["type"] == "manual":
        return {"Type": "Manual", "Manual": {"HTTPProxy": {"Host": proxy["host"], "Port": proxy["port"]}}}
    return {"Type": "PAC", "PAC": proxy["pac_url"]}


def _fp(pem: str) -> str:
    return hashlib.sha256(certificate_der(pem)).hexdigest()
