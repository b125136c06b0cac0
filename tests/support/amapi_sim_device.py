"""The device side of the AMAPI simulator: one managed tablet running Android Device Policy.

`SimDevice` holds what the tablet knows (its hardware, installed apps, passcode, lost mode,
key pairs); `apply_policy` does what Android Device Policy does with a policy (installs the
force-installed apps, removes blocked ones, and lists in nonComplianceDetails what it could not
apply); `device_json` writes the `Device` resource the server reports, with the fields the
policy's statusReportingSettings enables (softwareInfo, applicationReports, memoryInfo,
networkInfo, deviceSettings, powerManagementEvents, displays, memoryEvents) as the discovery
document says: hardwareInfo and securityPosture always, the rest only when enabled.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.serialization import pkcs12

ANDROID_DEVICE_POLICY = "com.google.android.apps.work.clouddpc"
API_LEVELS = {"10": 29, "11": 30, "12": 31, "13": 33, "14": 34, "15": 35, "16": 36}
_PASSWORD_FREE = {None, "PASSWORD_QUALITY_UNSPECIFIED"}
_NO_SUCH_KEY = "ONC_WIFI_KEY_PAIR_ALIAS_NOT_CORRESPONDING_TO_EXISTING_KEY"
_INSTALLED_TYPES = {"FORCE_INSTALLED", "REQUIRED_FOR_SETUP", "KIOSK", "PREINSTALLED"}


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class SimDevice:
    name: str
    serial: str
    model: str
    android_version: str
    imei: str | None
    enrolled_at: float
    enrollment_token_name: str
    enrollment_token_data: str | None
    policy_name: str
    management_mode: str = "DEVICE_OWNER"
    ownership: str = "COMPANY_OWNED"
    state: str = "ACTIVE"
    applied_state: str = "PROVISIONING"
    applied_policy_name: str | None = None
    applied_policy_version: str | None = None
    policy_compliant: bool = False
    non_compliance: list[dict[str, Any]] = field(default_factory=list)
    passcode_set: bool = True
    installed: dict[str, str] = field(default_factory=dict)  # package → versionName
    removed: set[str] = field(default_factory=set)
    key_pair_aliases: set[str] = field(default_factory=set)
    lost_mode: dict[str, Any] | None = None
    locked_times: int = 0
    battery_level: float = 0.87
    device_posture: str = "SECURE"
    security_patch_level: str = "2026-10-01"
    encrypted: bool = True
    adb_enabled: bool = False
    development_settings: bool = False
    unknown_sources: bool = False
    power_events: list[dict[str, Any]] = field(default_factory=list)
    previous_names: list[str] = field(default_factory=list)
    disabled_reason: dict[str, Any] | None = None
    last_status_report: float = 0.0
    last_policy_sync: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # raw Device fields a test sets

    @property
    def api_level(self) -> int:
        return API_LEVELS.get(self.android_version.split(".")[0], 34)


def _applications(policy: dict[str, Any]) -> list[dict[str, Any]]:
    apps = policy.get("applications")
    return [a for a in apps if isinstance(a, dict)] if isinstance(apps, list) else []


def apply_policy(
    device: SimDevice, policy: dict[str, Any], *, unavailable: set[str], now: float, install: bool = True
) -> None:
    """Android Device Policy applying `policy`: apps, then a compliance verdict."""
    for app in _applications(policy):
        package = app.get("packageName")
        if not isinstance(package, str):
            continue
        kind = app.get("installType", "AVAILABLE")
        if kind == "BLOCKED":
            device.installed.pop(package, None)
        elif kind in _INSTALLED_TYPES and install and package not in unavailable:
            device.installed.setdefault(package, "1.0.0")
            device.removed.discard(package)
    device.applied_policy_name = policy.get("name")
    device.applied_policy_version = str(policy.get("version", "1"))
    device.last_policy_sync = now
    if device.applied_state == "PROVISIONING":
        device.applied_state = "ACTIVE"
    judge(device, policy, unavailable=unavailable)


def judge(device: SimDevice, policy: dict[str, Any], *, unavailable: set[str]) -> None:
    """nonComplianceDetails and policyCompliant for what the device is now."""
    details: list[dict[str, Any]] = []
    for index, app in enumerate(_applications(policy)):
        package = app.get("packageName")
        kind = app.get("installType", "AVAILABLE")
        if kind in ("FORCE_INSTALLED", "REQUIRED_FOR_SETUP", "KIOSK") and package not in device.installed:
            details.append(
                {
                    "settingName": "applications",
                    "fieldPath": f"applications[{index}]",
                    "nonComplianceReason": "APP_NOT_INSTALLED",
                    "packageName": package,
                    "installationFailureReason": "NOT_FOUND" if package in unavailable else "IN_PROGRESS",
                }
            )
        elif kind == "BLOCKED" and package in device.installed:
            details.append(
                {
                    "settingName": "applications",
                    "fieldPath": f"applications[{index}]",
                    "nonComplianceReason": "APP_INSTALLED",
                    "packageName": package,
                }
            )
    if not device.passcode_set:
        qualities = [policy.get("passwordRequirements", {}).get("passwordQuality")]
        qualities += [
            p.get("passwordQuality") for p in policy.get("passwordPolicies", []) if isinstance(p, dict)
        ]
        if any(q not in _PASSWORD_FREE for q in qualities):
            setting = "passwordPolicies" if policy.get("passwordPolicies") else "passwordRequirements"
            details.append(
                {
                    "settingName": setting,
                    "nonComplianceReason": "USER_ACTION",
                    "specificNonComplianceReason": "PASSWORD_POLICIES_PASSWORD_NOT_SUFFICIENT",
                    "specificNonComplianceContext": {
                        "passwordPoliciesContext": {"passwordPolicyScope": "SCOPE_DEVICE"}
                    },
                }
            )
    usb = (policy.get("deviceConnectivityManagement") or {}).get("usbDataAccess")
    if usb == "DISALLOW_USB_DATA_TRANSFER" and device.api_level < 31:
        # The document: API_LEVEL below Android 12 (the device falls back to no file transfer).
        details.append(
            {
                "settingName": "deviceConnectivityManagement",
                "fieldPath": "deviceConnectivityManagement.usbDataAccess",
                "nonComplianceReason": "API_LEVEL",
                "currentValue": "DISALLOW_USB_FILE_TRANSFER",
            }
        )
    details.extend(_wifi_problems(device, policy))
    device.non_compliance = details
    device.policy_compliant = not details


def _wifi_problems(device: SimDevice, policy: dict[str, Any]) -> list[dict[str, Any]]:
    """What Android's Wi-Fi framework refuses in the policy's networks: an enterprise network
    without DomainSuffixMatch (AMAPI's network guide: treated as insecure and rejected by the
    platform), an EAP-TLS key pair alias the device does not hold, a client PKCS#12 it cannot
    read (ONC carries no password for it)."""
    onc = policy.get("openNetworkConfiguration")
    if not isinstance(onc, dict):
        return []
    problems = []
    for index, cert in enumerate(onc.get("Certificates") or []):
        if (
            isinstance(cert, dict)
            and cert.get("Type") == "Client"
            and not _readable_pkcs12(str(cert.get("PKCS12")))
        ):
            problems.append(
                {
                    "settingName": "openNetworkConfiguration",
                    "fieldPath": f"openNetworkConfiguration.Certificates[{index}]",
                    "nonComplianceReason": "INVALID_VALUE",
                }
            )
    for index, network in enumerate(onc.get("NetworkConfigurations") or []):
        eap = ((network or {}).get("WiFi") or {}).get("EAP")
        if not isinstance(eap, dict):
            continue
        reason = None
        if not eap.get("DomainSuffixMatch"):
            reason = "ONC_WIFI_INVALID_ENTERPRISE_CONFIG"
        elif (
            eap.get("ClientCertType") == "KeyPairAlias"
            and eap.get("ClientCertKeyPairAlias") not in device.key_pair_aliases
        ):
            reason = _NO_SUCH_KEY
        if reason:
            problems.append(
                {
                    "settingName": "openNetworkConfiguration",
                    "fieldPath": f"openNetworkConfiguration.NetworkConfigurations[{index}]",
                    "nonComplianceReason": "INVALID_VALUE",
                    "specificNonComplianceReason": reason,
                    "specificNonComplianceContext": {
                        "oncWifiContext": {"wifiGuid": str(network.get("GUID", ""))}
                    },
                }
            )
    return problems


@cache
def _readable_pkcs12(b64: str) -> bool:
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(base64.b64decode(b64), None)
    except ValueError:
        try:
            key, certificate, _ = pkcs12.load_key_and_certificates(base64.b64decode(b64), b"")
        except ValueError:
            return False
    return key is not None and certificate is not None


def device_json(device: SimDevice, policy: dict[str, Any], now: float) -> dict[str, Any]:
    reporting = policy.get("statusReportingSettings") or {}
    body: dict[str, Any] = {
        "name": device.name,
        "managementMode": device.management_mode,
        "state": device.state,
        "appliedState": "LOST"
        if device.lost_mode is not None and device.state == "ACTIVE"
        else device.applied_state,
        "policyCompliant": device.policy_compliant,
        "policyName": device.policy_name,
        "enrollmentTime": rfc3339(device.enrolled_at),
        "lastStatusReportTime": rfc3339(device.last_status_report or now),
        "lastPolicySyncTime": rfc3339(device.last_policy_sync or now),
        "apiLevel": device.api_level,
        "enrollmentTokenName": device.enrollment_token_name,
        "ownership": device.ownership,
        "hardwareInfo": {
            "brand": "samsung",
            "hardware": "exynos1280",
            "manufacturer": "samsung",
            "model": device.model,
            "serialNumber": device.serial,
            "deviceBasebandVersion": device.model.replace("-", "") + "XXU3CXH1",
        },
        "securityPosture": {"devicePosture": device.device_posture},
    }
    if device.device_posture != "SECURE":
        body["securityPosture"]["postureDetails"] = [
            {
                "securityRisk": "COMPROMISED_OS"
                if device.device_posture == "POTENTIALLY_COMPROMISED"
                else "UNKNOWN_OS",
                "advice": [{"defaultMessage": "Restore the device's operating system."}],
            }
        ]
    if device.enrollment_token_data is not None:
        body["enrollmentTokenData"] = device.enrollment_token_data
    if device.applied_policy_version is not None:
        body["appliedPolicyName"] = device.applied_policy_name or device.policy_name
        body["appliedPolicyVersion"] = device.applied_policy_version
        body["lastPolicyComplianceReportTime"] = rfc3339(device.last_policy_sync or now)
    if device.non_compliance:
        body["nonComplianceDetails"] = device.non_compliance
    if device.previous_names:
        body["previousDeviceNames"] = device.previous_names
    if device.disabled_reason:
        body["disabledReason"] = device.disabled_reason
    if reporting.get("softwareInfoEnabled"):
        body["softwareInfo"] = {
            "androidVersion": device.android_version,
            "androidBuildNumber": f"UP1A.231005.007.{device.model.replace('-', '')}XXS3CXJ1",
            "androidBuildTime": "2026-09-15T03:12:00Z",
            "securityPatchLevel": device.security_patch_level,
            "androidDevicePolicyVersionCode": 17_263_000,
            "androidDevicePolicyVersionName": "17.26.3",
            "bootloaderVersion": device.model.replace("-", "") + "XXS3CXJ1",
            "deviceKernelVersion": "5.10.198-android12-9",
            "primaryLanguageCode": "ja-JP",
            "systemUpdateInfo": {"updateStatus": "UP_TO_DATE"},
        }
    if reporting.get("applicationReportsEnabled"):
        reports = [
            {
                "packageName": package,
                "versionName": version,
                "versionCode": 1,
                "state": "INSTALLED",
                "applicationSource": "INSTALLED_FROM_PLAY_STORE",
                "installerPackageName": "com.android.vending",
                "userFacingType": "USER_FACING",
            }
            for package, version in sorted(device.installed.items())
        ]
        reports.append(
            {
                "packageName": ANDROID_DEVICE_POLICY,
                "displayName": "Android Device Policy",
                "versionName": "17.26.3",
                "versionCode": 17_263_000,
                "state": "INSTALLED",
                "applicationSource": "SYSTEM_APP_UPDATED_VERSION",
                "userFacingType": "NOT_USER_FACING",
            }
        )
        if (reporting.get("applicationReportingSettings") or {}).get("includeRemovedApps"):
            reports += [{"packageName": p, "state": "REMOVED"} for p in sorted(device.removed)]
        body["applicationReports"] = reports
    if reporting.get("memoryInfoEnabled"):
        body["memoryInfo"] = {"totalRam": str(4 * 1024**3), "totalInternalStorage": str(64 * 1024**3)}
        body["memoryEvents"] = [
            {
                "eventType": "RAM_MEASURED",
                "byteCount": str(4 * 1024**3),
                "createTime": rfc3339(device.enrolled_at),
            }
        ]
    if reporting.get("networkInfoEnabled"):
        network: dict[str, Any] = {"wifiMacAddress": "02:00:00:00:00:00", "networkOperatorName": ""}
        if device.imei:
            network["imei"] = device.imei
            network["networkOperatorName"] = "NTT DOCOMO"
        body["networkInfo"] = network
    if reporting.get("deviceSettingsEnabled"):
        body["deviceSettings"] = {
            "isDeviceSecure": device.passcode_set,
            "isEncrypted": device.encrypted,
            "encryptionStatus": "ACTIVE_PER_USER" if device.encrypted else "INACTIVE",
            "adbEnabled": device.adb_enabled,
            "developmentSettingsEnabled": device.development_settings,
            "unknownSourcesEnabled": device.unknown_sources,
            "verifyAppsEnabled": True,
        }
    if reporting.get("powerManagementEventsEnabled"):
        body["powerManagementEvents"] = [
            *device.power_events,
            {
                "eventType": "BATTERY_LEVEL_COLLECTED",
                "batteryLevel": device.battery_level * 100,
                "createTime": rfc3339(device.last_status_report or now),
            },
        ]
    if reporting.get("displayInfoEnabled"):
        body["displays"] = [
            {
                "name": "Built-in Screen",
                "displayId": 0,
                "refreshRate": 60,
                "state": "ON",
                "width": 1200,
                "height": 1920,
                "density": 240,
            }
        ]
    body.update(device.extra)
    return body


def password_problem(policy: dict[str, Any], new_password: str) -> str | None:
    """Why the device's resetPasswordWithToken would refuse `new_password` under the policy's
    password constraints (None when it accepts it). An empty password clears the lock, which
    any required quality forbids."""
    rules = [policy.get("passwordRequirements") or {}]
    rules += [p for p in policy.get("passwordPolicies", []) if isinstance(p, dict)]
    for rule in rules:
        quality = rule.get("passwordQuality")
        if quality in _PASSWORD_FREE:
            continue
        minimum = int(rule.get("passwordMinimumLength", 0) or 0)
        minimum = max(minimum, {"COMPLEXITY_MEDIUM": 4, "COMPLEXITY_HIGH": 6}.get(str(quality), 1))
        if len(new_password) < minimum:
            return f"the password is shorter than {minimum} characters"
        letters = any(c.isalpha() for c in new_password)
        digits = any(c.isdigit() for c in new_password)
        if quality in ("NUMERIC", "NUMERIC_COMPLEX") and not digits:
            return "the password needs digits"
        if quality == "ALPHABETIC" and not letters:
            return "the password needs letters"
        if quality == "ALPHANUMERIC" and not (letters and digits):
            return "the password needs letters and digits"
        if quality == "COMPLEX":
            # The minimum counts apply (Android's defaults: one letter, one digit, one symbol).
            counts = {
                "passwordMinimumLetters": (1, sum(c.isalpha() for c in new_password)),
                "passwordMinimumNumeric": (1, sum(c.isdigit() for c in new_password)),
                "passwordMinimumSymbols": (1, sum(not c.isalnum() for c in new_password)),
                "passwordMinimumUpperCase": (0, sum(c.isupper() for c in new_password)),
                "passwordMinimumLowerCase": (0, sum(c.islower() for c in new_password)),
                "passwordMinimumNonLetter": (0, sum(not c.isalpha() for c in new_password)),
            }
            for name, (default, have) in counts.items():
                if have < int(rule.get(name, default)):
                    return f"the password has fewer than {name} = {rule.get(name, default)}"
    return None
