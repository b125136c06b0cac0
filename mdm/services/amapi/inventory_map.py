"""An AMAPI `Device` (a STATUS_REPORT or ENROLLMENT notification, devices.get/list) as the
inventory Hikeshi already keeps for Android tablets (pure: no database).

The result has the shape of the agent's inventory (mdm.services.inventory.android), so the same
facts, installed apps, history, compliance and readiness follow. Only what the Device says is
written: a part it leaves out is left out here (the facts keep what was known before), a field
AMAPI does not know stays unknown (None), and keys this code does not know are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Password settings of the policy whose non-compliance means "the passcode is not sufficient".
_PASSWORD_SETTINGS = {"passwordPolicies", "passwordRequirements"}
_PASSWORD_REASONS = {"PASSWORD_POLICIES_PASSWORD_NOT_SUFFICIENT", "PASSWORD_POLICIES_PASSWORD_EXPIRED"}
# Kept per non-compliance detail (bounded: a policy has a few dozen settings at most).
_DETAIL_KEYS = (
    "settingName",
    "nonComplianceReason",
    "packageName",
    "fieldPath",
    "installationFailureReason",
    "specificNonComplianceReason",
)
MAX_DETAILS = 100
MAX_APPS = 2000


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any, limit: int = 255) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def non_compliance(device: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The Device's nonComplianceDetails, bounded and with known keys only; None when not sent."""
    details = device.get("nonComplianceDetails")
    if not isinstance(details, list):
        return None
    found = []
    for item in details[:MAX_DETAILS]:
        if isinstance(item, Mapping):
            found.append({key: _str(item.get(key)) for key in _DETAIL_KEYS if _str(item.get(key))})
    return found


def password_sufficient(device: Mapping[str, Any]) -> bool | None:
    """False when a password setting is listed as not complied with; True when the Device says it
    complies with its policy; otherwise unknown."""
    details = non_compliance(device)
    if details:
        for item in details:
            if (
                item.get("settingName") in _PASSWORD_SETTINGS
                or item.get("specificNonComplianceReason") in _PASSWORD_REASONS
            ):
                return False
    compliant = _bool(device.get("policyCompliant"))
    if compliant is True:
        return True
    if compliant is False and details is not None:
        return True  # non-compliant, but nothing about the password is among the reasons listed
    return None


def _packages(device: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    reports = device.get("applicationReports")
    if not isinstance(reports, list):
        return None  # not sent: the installed apps stay as they were
    packages = []
    for report in reports[:MAX_APPS]:
        if not isinstance(report, Mapping) or not _str(report.get("packageName")):
            continue
        if report.get("state") == "REMOVED":
            continue
        source = report.get("applicationSource")
        code = report.get("versionCode")
        packages.append(
            {
                "package_name": _str(report["packageName"]),
                "label": _str(report.get("displayName")),
                "version_name": _str(report.get("versionName"), 64),
                "version_code": code if isinstance(code, int) and not isinstance(code, bool) else None,
                # The firmware's own apps: kept in the raw inventory, not judged as installed apps.
                "system": isinstance(source, str) and source.startswith("SYSTEM_APP"),
            }
        )
    return packages


def agent_inventory(device: Mapping[str, Any]) -> dict[str, Any]:
    """The Device as an agent inventory (mdm.services.inventory.android.apply_android_inventory)."""
    hardware_info, software, network = (
        _map(device.get("hardwareInfo")),
        _map(device.get("softwareInfo")),
        _map(device.get("networkInfo")),
    )
    settings = _map(device.get("deviceSettings"))
    hardware = {
        "serial_number": _str(hardware_info.get("serialNumber"), 64),
        "model": _str(hardware_info.get("model"), 64),
        "manufacturer": _str(hardware_info.get("manufacturer") or hardware_info.get("brand"), 64),
        "imei": _str(network.get("imei"), 32),
        "wifi_mac": _str(network.get("wifiMacAddress"), 32),
    }
    os_info = {
        "android_version": _str(software.get("androidVersion"), 32),
        "build_id": _str(software.get("androidBuildNumber"), 32),
        "security_patch": _str(software.get("securityPatchLevel"), 10),
    }
    mode = device.get("managementMode")
    applied = device.get("appliedState") or device.get("state")
    security = {
        # A fully managed tablet (QR enrollment) is its device owner: what supervision is on Apple.
        "device_owner": {"DEVICE_OWNER": True, "PROFILE_OWNER": False}.get(mode)
        if isinstance(mode, str)
        else None,
        "password_set": _bool(settings.get("isDeviceSecure")),
        "password_sufficient": password_sufficient(device),
        "lost_mode": (applied == "LOST") if isinstance(applied, str) else None,
    }
    inventory: dict[str, Any] = {
        "hardware": {k: v for k, v in hardware.items() if v is not None},
        "os": {k: v for k, v in os_info.items() if v is not None},
        "security": {k: v for k, v in security.items() if v is not None},
    }
    encryption = {
        "encrypted": _bool(settings.get("isEncrypted")),
        "status": _str(settings.get("encryptionStatus"), 32),
    }
    if any(v is not None for v in encryption.values()):
        inventory["encryption"] = {k: v for k, v in encryption.items() if v is not None}
    packages = _packages(device)
    if packages is not None:
        inventory["packages"] = packages
    policy = amapi_policy_state(device)
    if policy is not None:
        inventory["amapi_policy"] = policy
    return inventory


def amapi_policy_state(device: Mapping[str, Any]) -> dict[str, Any] | None:
    """Whether the tablet applies its policy, as the Device says (None: it said nothing)."""
    compliant = _bool(device.get("policyCompliant"))
    if compliant is None:
        return None
    return {
        "policy_compliant": compliant,
        "non_compliance": non_compliance(device) or [],
        "applied_policy_name": _str(device.get("appliedPolicyName")),
        "applied_policy_version": _str(str(device["appliedPolicyVersion"]), 32)
        if device.get("appliedPolicyVersion") is not None
        else None,
    }
