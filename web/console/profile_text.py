"""The profile page in the reader's language: payload summaries and the renderers' notes.

The renderers (profiles.apple_render, profiles.android_render) explain in English what a platform
cannot do; the console says the same in Japanese. A note it does not recognise is shown as the
renderer wrote it (tests/web/test_console_japanese.py finds it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from profiles.summary import payload_summary
from web.console.blueprint import bp

SETTINGS: dict[str, Any] = {
    "min_length": _l("minimum length"),
    "auto_lock_minutes": _l("auto-lock (minutes)"),
    "max_failed_attempts": _l("failed attempts before erase"),
    "max_age_days": _l("passcode age (days)"),
    "history": _l("passcode history"),
    "camera": _l("camera"),
    "app_store": _l("app store"),
    "airdrop": _l("AirDrop"),
    "account_modification": _l("account changes"),
    "erase_content_and_settings": _l("erase from the device"),
    "in_app_purchases": _l("in-app purchases"),
    "screenshot": _l("screenshots"),
    "bluetooth_modification": _l("Bluetooth changes"),
    "app_allow_list": _l("allowed apps"),
    "app_block_list": _l("blocked apps"),
    "required_apps": _l("required apps"),
    "allowed": _l("allowed"),
    "no_file_transfer": _l("no file transfer"),
    "no_data": _l("no data"),
    "wpa2_enterprise": _l("WPA2 Enterprise"),
    "wpa3_enterprise": _l("WPA3 Enterprise"),
    "wpa2_personal": _l("WPA2 Personal"),
    "wpa3_personal": _l("WPA3 Personal"),
    "open": _l("open"),
    "enrollment_identity": _l("enrollment certificate"),
    "scep": _l("certificate by SCEP"),
}


# The restrictions an iPad enforces only when supervised, by the names Apple's keys stand for.
APPLE_KEYS: dict[str, Any] = {
    "allowAccountModification": _l("account changes"),
    "allowAirDrop": _l("AirDrop"),
    "allowEraseContentAndSettings": _l("erase from the device"),
    "allowFilesUSBDriveAccess": _l("USB drives in Files"),
    "allowHostPairing": _l("pairing with a computer"),
    "allowUIAppInstallation": _l("app installation"),
    "allowUSBRestrictedMode": _l("USB restricted mode"),
    "allowAppInstallation": _l("app installation"),
    "allowCamera": _l("camera"),
}


def _apple_keys(listed: str) -> str:
    return "、".join(str(APPLE_KEYS.get(k.strip(), k.strip())) for k in listed.split(","))


def _ja() -> bool:
    return str(get_locale() or "ja") == "ja"


def _word(name: str) -> str:
    return str(SETTINGS[name]) if name in SETTINGS else name


def summary_text(payload: Mapping[str, Any]) -> str:
    """payload_summary's line with the settings named in Japanese (unchanged in English)."""
    if not _ja():
        return payload_summary(payload)
    kind = payload.get("kind")
    settings = payload.get("settings") or {}
    parts: list[str] = []
    if kind == "wifi":
        parts = [f"SSID {settings.get('ssid')}", _word(str(settings.get("security")))]
        if settings.get("eap_type"):
            parts.append(f"{settings['eap_type']}({_word(str(settings.get('certificate_source')))})")
    elif kind == "passcode":
        parts = [
            f"{_word(name)} {settings[name]}"
            for name in ("min_length", "auto_lock_minutes", "max_failed_attempts", "max_age_days", "history")
            if name in settings
        ]
    elif kind == "restrictions":
        denied = sorted(
            k.removeprefix("allow_") for k, v in settings.items() if k.startswith("allow_") and v is False
        )
        allowed = sorted(
            k.removeprefix("allow_") for k, v in settings.items() if k.startswith("allow_") and v is True
        )
        if denied:
            parts.append(_("off: %(names)s", names="、".join(_word(k) for k in denied)))
        if allowed:
            parts.append(_("on: %(names)s", names="、".join(_word(k) for k in allowed)))
        for name in ("app_allow_list", "app_block_list", "required_apps"):
            if name in settings:
                parts.append(f"{_word(name)} ({len(settings[name])})")
        if "usb_data_access" in settings:
            parts.append(f"USB {_word(str(settings['usb_data_access']))}")
    elif kind == "certificates":
        parts = [_("%(n)d certificates", n=len(settings.get("certificates", [])))]
    elif kind == "web_content_filter":
        parts = [_("%(n)d allowed URLs", n=len(settings.get("allowed_urls", [])))]
    return " · ".join(parts)


_NOTES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"Enforced on supervised devices only: (.+)\."),
        lambda m: _("Enforced on supervised devices only: %(keys)s.", keys=_apple_keys(m[1])),
    ),
    (
        re.compile(r"Enforced on supervised devices only \(iOS 14\.5 or later\)\."),
        lambda m: _("Enforced on supervised devices only (iOS 14.5 or later)."),
    ),
    (
        re.compile(r"iOS cannot turn off USB data for accessories on an unlocked device; .*"),
        lambda m: _(
            "iOS cannot turn off USB data for accessories on an unlocked device; rendered as no USB "
            "storage, no computer pairing and USB restricted mode."
        ),
    ),
    (
        re.compile(r"iOS installs apps with the InstallApplication command, not with a profile; .*"),
        lambda m: _(
            "iOS installs apps with the InstallApplication command, not with a profile; the apps are "
            "only added to the allow list here."
        ),
    ),
    (re.compile(r"(.+) has no iOS bundle ID\."), lambda m: _("%(app)s has no iOS bundle ID.", app=m[1])),
    (
        re.compile(r"No app in the list has an iOS bundle ID\."),
        lambda m: _("No app in the list has an iOS bundle ID."),
    ),
    (
        re.compile(r"Rendered without a device name: .*"),
        # The preview has no device: each device's own profile carries its name (developer
        # detail of the renderer's API left out).
        lambda m: _("This preview has no device name; the profile sent to each device carries its own."),
    ),
    (
        re.compile(r"iOS cannot use the enrollment identity from another profile; .*"),
        lambda m: _(
            "iOS cannot use the enrollment certificate from another profile; the device requests a Wi-Fi "
            "certificate from the same built-in CA through SCEP."
        ),
    ),
    (
        re.compile(r"iPad offers 2, 5, 10 or 15 minutes; (\S+) is rounded by the device\."),
        lambda m: _(
            "iPad offers 2, 5, 10 or 15 minutes; %(minutes)s is rounded by the device.", minutes=m[1]
        ),
    ),
    (
        re.compile(r"(.+) has no Android package name\."),
        lambda m: _("%(app)s has no Android package name.", app=m[1]),
    ),
    (
        re.compile(r"Android cannot hide Google Play alone: .*"),
        lambda m: _(
            "Android cannot hide Google Play alone: the store then offers only the policy's apps and "
            "removes apps that are not in the policy."
        ),
    ),
    (
        re.compile(r"The ONC subset of the Android Management API cannot require WPA3 only; .*"),
        lambda m: _(
            "Android cannot require WPA3 only; the network is set as WPA2/WPA3 "
            "(the device may also join WPA2)."
        ),
    ),
    (
        re.compile(r"(.+): Android matches server names by domain suffix and has no inner wildcards\."),
        lambda m: _(
            "%(name)s: Android matches server names by domain suffix and has no inner wildcards.", name=m[1]
        ),
    ),
    (
        re.compile(r"The Hikeshi agent installs the device's EAP-TLS identity .*"),
        lambda m: _(
            "The Hikeshi agent installs each device's own EAP-TLS certificate; it is per device, so it is "
            "not part of this policy."
        ),
    ),
    (
        re.compile(r"The device generates its EAP-TLS key as key pair .*"),
        lambda m: _(
            "Each tablet generates its own EAP-TLS key and gets its certificate from the built-in CA; "
            "it is per device, so it is not part of this policy."
        ),
    ),
    (
        re.compile(r"The Android agent gets its Wi-Fi certificate from Hikeshi's built-in CA, .*"),
        lambda m: _(
            "Android tablets get their Wi-Fi certificate from the built-in CA, not from this SCEP "
            "server: the RADIUS server must trust the built-in CA."
        ),
    ),
    (
        re.compile(r"The Policy resource installs CA certificates only as ONC authorities .*"),
        lambda m: _(
            "Android installs these CA certificates only for Wi-Fi server checks, "
            "not as device-wide trusted roots."
        ),
    ),
    (
        re.compile(r"The URL allow list is enforced through Chrome, which this profile blocks\."),
        lambda m: _("The URL allow list is enforced through Chrome, which this profile blocks."),
    ),
    (
        re.compile(r"Enforced in Chrome through its managed configuration .*"),
        lambda m: _(
            "Enforced in Chrome through its managed settings; "
            "block other browsers with an app allow or block list."
        ),
    ),
    (
        re.compile(r"The Android Management API Policy has no in-app purchase control\."),
        lambda m: _("Android policies have no in-app purchase control."),
    ),
    (
        re.compile(r"AirDrop is an Apple feature; .*"),
        lambda m: _("AirDrop is an Apple feature; Android policies have no equivalent for nearby sharing."),
    ),
]


@bp.app_template_filter("note_text")
def note_text(message: object) -> str:
    text = str(message)
    if not _ja():
        return text
    for pattern, say in _NOTES:
        match = pattern.fullmatch(text)
        if match:
            return say(match)
    return text


@bp.app_template_filter("summary_text")
def _summary_filter(payload: Mapping[str, Any]) -> str:
    return summary_text(payload)
