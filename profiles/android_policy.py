"""The one Android policy a device should have: its desired profiles merged into one document.

The Android agent protocol (mdm/doors/android) answers the agent's sync with `policy_for_device`: the
`version` is a stable hash of the merged policy, so the agent (and the server) can tell "nothing
changed" without comparing documents.

Several profiles can set the same field. They combine as they would on a device that enforced all
of them: the more restrictive value wins (a disabled camera, the shorter lock time, the longer
minimum passcode, a blocked app, a Play Store limited to the policy's apps); lists of networks,
certificates and apps are joined. A field two profiles set differently with no "more restrictive"
order keeps the value of the first profile (by identifier) and the clash is reported in
`unsupported`, like every setting a profile cannot express on Android.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.ca import CANotReady, device_ca_certificate
from mdm.ground.models import Device
from mdm.ground.x509util import to_pem
from profiles.assignment import desired_profiles, profiles_along
from profiles.rendering import ANDROID, RenderContext, RenderError
from profiles.service import render_profile


@dataclass(frozen=True)
class AndroidPolicyDocument:
    """`policy` in the shape of the Android Management API Policy resource; `version` changes
    exactly when `policy` does; `unsupported` says what the policy could not carry."""

    version: str
    policy: dict[str, Any]
    unsupported: list[str] = field(default_factory=list)


def policy_version(policy: dict[str, Any]) -> str:
    canonical = json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def policy_for_device(
    session: Session,
    device: Device,
    *,
    secret_key: str | None = None,
    chain_ids: Sequence[int] | None = None,
) -> AndroidPolicyDocument:
    """The merged policy of every profile assigned along the device's unit path (empty outside one).

    With `secret_key` (the agent's own sync) the policy carries the profiles' secrets (Wi-Fi
    passphrases); without it they are left out. `chain_ids`: the device's unit and every unit
    above it, when the caller has read them (the profiles are then read in one statement)."""
    profiles = desired_profiles(session, device) if chain_ids is None else profiles_along(session, chain_ids)
    if not profiles:
        # Nothing to render: the built-in CA a profile may trust is not read (every sync asks this).
        return AndroidPolicyDocument(policy_version({}), {}, [])
    context = RenderContext(ca_certificate_pem=_builtin_ca_pem(session), secret_key=secret_key)
    merged: dict[str, Any] = {}
    unsupported: list[str] = []
    for profile in profiles:
        label = f"{profile.identifier} v{profile.version}"
        try:
            result = render_profile(profile, ANDROID, context)
        except RenderError as exc:
            unsupported.append(f"{label}: not rendered: {exc}")
            continue
        unsupported.extend(
            f"{label} {item['payload']}.{item['field']}: {item['reason']}" for item in result.unsupported
        )
        for clash in merge_policy(merged, result.content):
            unsupported.append(f"{label} {clash}: set differently by an earlier profile, which wins")
    return AndroidPolicyDocument(policy_version(merged), merged, unsupported)


def password_policies_for_device(session: Session, device: Device) -> list[dict[str, Any]]:
    """The passwordPolicies of the device's merged policy: what a new password must satisfy."""
    policies = policy_for_device(session, device).policy.get("passwordPolicies") or []
    return [dict(p) for p in policies]


def _builtin_ca_pem(session: Session) -> str | None:
    try:
        return to_pem(device_ca_certificate(session))
    except CANotReady:
        return None  # a profile trusting the built-in CA then reports itself not rendered


# -- merging -------------------------------------------------------------------------------------

# Restrictiveness orders, least restrictive first.
_ORDERS: dict[str, tuple[str, ...]] = {
    "cameraAccess": ("CAMERA_ACCESS_USER_CHOICE", "CAMERA_ACCESS_DISABLED"),
    "playStoreMode": ("BLACKLIST", "WHITELIST"),
}
_USB_ORDER = ("ALLOW_USB_DATA_TRANSFER", "DISALLOW_USB_FILE_TRANSFER", "DISALLOW_USB_DATA_TRANSFER")
_INSTALL_TYPES = ("AVAILABLE", "FORCE_INSTALLED", "BLOCKED")
_QUALITY = ("NUMERIC", "NUMERIC_COMPLEX", "ALPHABETIC", "ALPHANUMERIC", "COMPLEX")
# Password requirement fields where the larger value is stricter, and where the smaller is.
_PASSWORD_MAX = {
    "passwordMinimumLength",
    "passwordMinimumSymbols",
    "passwordMinimumLetters",
    "passwordMinimumNumeric",
    "passwordMinimumUpperCase",
    "passwordMinimumLowerCase",
    "passwordMinimumNonLetter",
    "passwordHistoryLength",
}
_PASSWORD_MIN = {"maximumFailedPasswordsForWipe"}


def _stricter(order: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    def pick(a: Any, b: Any) -> Any:
        rank = {value: index for index, value in enumerate(order)}
        return b if rank.get(b, -1) > rank.get(a, -1) else a

    return pick


def _seconds(value: str) -> float:
    return float(value.rstrip("s"))


def merge_policy(into: dict[str, Any], policy: dict[str, Any]) -> list[str]:
    """Merge `policy` into `into` in place; the fields that clashed without a stricter value."""
    clashes: list[str] = []
    for key, value in policy.items():
        if key not in into:
            into[key] = json.loads(json.dumps(value))  # a private copy
            continue
        current = into[key]
        if current == value:
            continue
        if key in _ORDERS:
            into[key] = _stricter(_ORDERS[key])(current, value)
        elif key.endswith("Disabled") and isinstance(value, bool):
            into[key] = bool(current) or value
        elif key == "maximumTimeToLock":
            into[key] = str(min(int(current), int(value)))
        elif key == "deviceConnectivityManagement":
            usb = _stricter(_USB_ORDER)(current.get("usbDataAccess"), value.get("usbDataAccess"))
            into[key] = {**value, **current, "usbDataAccess": usb}
        elif key == "applications":
            clashes.extend(_merge_applications(current, value))
        elif key == "passwordPolicies":
            into[key] = _merge_passwords(current, value)
        elif key == "openNetworkConfiguration":
            _merge_onc(current, value)
        else:
            clashes.append(key)
    return clashes


def _merge_applications(current: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> list[str]:
    clashes: list[str] = []
    by_package = {app["packageName"]: app for app in current}
    for app in incoming:
        have = by_package.get(app["packageName"])
        if have is None:
            copied = json.loads(json.dumps(app))
            current.append(copied)
            by_package[app["packageName"]] = copied
            continue
        if "installType" in app:
            have["installType"] = _stricter(_INSTALL_TYPES)(have.get("installType"), app["installType"])
        config = app.get("managedConfiguration")
        if config is not None:
            mine = have.setdefault("managedConfiguration", {})
            for name, value in config.items():
                if name not in mine:
                    mine[name] = value
                elif isinstance(mine[name], list) and isinstance(value, list):
                    mine[name] = mine[name] + [v for v in value if v not in mine[name]]
                elif mine[name] != value:
                    clashes.append(f"applications[{app['packageName']}].managedConfiguration.{name}")
    return clashes


def _merge_passwords(current: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_scope = {p.get("passwordScope", "SCOPE_UNSPECIFIED"): dict(p) for p in current}
    for requirements in incoming:
        scope = requirements.get("passwordScope", "SCOPE_UNSPECIFIED")
        have = by_scope.get(scope)
        if have is None:
            by_scope[scope] = dict(requirements)
            continue
        for name, value in requirements.items():
            if name not in have:
                have[name] = value
            elif name in _PASSWORD_MAX:
                have[name] = max(have[name], value)
            elif name in _PASSWORD_MIN:
                have[name] = min(have[name], value)
            elif name == "passwordQuality":
                have[name] = _stricter(_QUALITY)(have[name], value)
            elif name == "passwordExpirationTimeout":
                have[name] = min(have[name], value, key=_seconds)
    return list(by_scope.values())


def _merge_onc(current: dict[str, Any], incoming: dict[str, Any]) -> None:
    for list_name in ("NetworkConfigurations", "Certificates"):
        if list_name not in incoming:
            continue
        mine = current.setdefault(list_name, [])
        guids = {item["GUID"] for item in mine}
        for item in incoming[list_name]:
            if item["GUID"] not in guids:
                mine.append(json.loads(json.dumps(item)))
                guids.add(item["GUID"])
