"""Required and blocked apps in the Android agent's policy.

The policy keeps the shape of the Android Management API Policy: each app is an
`applications[]` entry with its `installType` (FORCE_INSTALLED for a required app, BLOCKED for a
blocked one), a required APK's `minimumVersionCode`, its `signingKeyCerts` (the SHA-256 of its
signing certificate, base64, as AMAPI has it for apps not from Play) and its
`managedConfiguration`. What AMAPI cannot say, because Play serves its apps, travels beside the
policy in `app_sources`: the URL Hikeshi serves the APK at and its SHA-256, so a tablet on a
closed network installs it without Google Play and checks the file and the signer first.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.models import AppKind, AppRuleAction, Device
from mdm.services.apps.catalog import file_path, package_of
from mdm.services.apps.configuration import render_configuration, substitution_values
from mdm.services.apps.rules import effective_rules


@dataclass(frozen=True)
class AndroidAppsPart:
    applications: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def fingerprint_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def android_apps_part(
    session: Session, device: Device, *, public_url: str | None, chain: Sequence[int] | None = None
) -> AndroidAppsPart:
    """`chain`: the device's unit and those above it, nearest first, if already read."""
    part = AndroidAppsPart()
    values: dict[str, str] | None = None
    for identifier, rule in sorted(effective_rules(session, device, chain).items()):
        if rule.action == AppRuleAction.BLOCKED:
            part.applications.append({"packageName": identifier, "installType": "BLOCKED"})
            continue
        app = rule.app
        if app is None or app.kind != AppKind.ANDROID_APK:
            continue
        package = package_of(session, app)
        if package is None or package.signing_cert_sha256 is None:
            part.unsupported.append(f"app {identifier}: no signed APK uploaded")
            continue
        entry: dict[str, Any] = {
            "packageName": identifier,
            "installType": "FORCE_INSTALLED",
            "signingKeyCerts": [
                {"signingKeyCertFingerprintSha256": fingerprint_b64(package.signing_cert_sha256)}
            ],
        }
        if app.version_code is not None:
            entry["minimumVersionCode"] = app.version_code
        if rule.configuration is not None:
            values = values if values is not None else substitution_values(session, device)
            entry["managedConfiguration"] = render_configuration(rule.configuration, values)
        part.applications.append(entry)
        source: dict[str, Any] = {
            "package_name": identifier,
            "version_code": app.version_code,
            "version_name": app.version,
            "sha256": package.sha256,
            "signing_cert_sha256": package.signing_cert_sha256,
            "size": package.size,
            "download_path": file_path(package),
        }
        if public_url:
            source["download_url"] = public_url.rstrip("/") + file_path(package)
        part.sources.append(source)
    return part
