"""What the audit log shows a person: a label for every action, a name for every actor, details
as text. The stored event keeps its English key and raw actor (the hash chain covers them);
only the page and the export's extra columns speak Japanese.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import ApiToken, AuditEvent, Device, User
from mdm.ground.models.incident import IncidentStatus
from web.console.hotline import STEPS
from web.console.labels import ROLES

ACTIONS: dict[str, Any] = {
    "app.added": _l("App added to the catalog"),
    "app.block_action_changed": _l("Blocked-app action of a unit changed"),
    "app.blocked": _l("App blocked for a unit"),
    "app.blocked_app_found": _l("Blocked app found on a device"),
    "app.download_url_rotated": _l("App download URL renewed"),
    "app.removed": _l("App removed from the catalog"),
    "app.required": _l("App required for a unit"),
    "app.rule_removed": _l("App rule of a unit removed"),
    "app.update_sent": _l("App update sent"),
    "app.uploaded": _l("App file uploaded"),
    "app.version_changed": _l("App store version changed"),
    "activation_lock.bypass_code_escrowed": _l("Activation Lock bypass code escrowed"),
    "activation_lock.bypass_code_revealed": _l("Activation Lock bypass code shown"),
    "activation_lock.bypass_code_unavailable": _l("Device gave no Activation Lock bypass code"),
    "activation_lock.unit_setting_changed": _l("Activation Lock setting of a unit changed"),
    "amapi.credential_uploaded": _l("Android Management API service account uploaded"),
    "amapi.signup_started": _l("Android Management API enterprise signup started"),
    "amapi.enterprise_bound": _l("Android Management API enterprise bound"),
    "amapi.notifications_set": _l("Android Management API notification topic set"),
    "amapi.unit_mode_changed": _l("Android management mode of a unit changed"),
    "amapi.policy_patched": _l("Android Management API policy of a unit updated"),
    "amapi.enrollment_token_created": _l("Android Management API enrollment token created"),
    "amapi.enrollment_token_revoked": _l("Android Management API enrollment token revoked"),
    "android.location_reporting_changed": _l("Location reporting of a unit's Android tablets changed"),
    "ade.token_key_created": _l("ABM token key pair created"),
    "vpp.token_uploaded": _l("Apps and Books content token uploaded"),
    "vpp.synced": _l("Synced with Apps and Books"),
    "vpp.token_claimed": _l("Apps and Books content token named this server as its MDM"),
    "vpp.location_changed": _l("Apps and Books content token is for another location"),
    "vpp.license_requested": _l("App license assigned to a device (requested)"),
    "vpp.license_release_requested": _l("App license released from a device (requested)"),
    "vpp.event_completed": _l("Apps and Books finished a license request"),
    "vpp.event_abandoned": _l("Apps and Books license request given up (never confirmed)"),
    "ade.server_token_uploaded": _l("ABM server token uploaded"),
    "ade.rule_saved": _l("ABM device placement rule saved"),
    "ade.rule_removed": _l("ABM device placement rule removed"),
    "ade.order_imported": _l("Order serial numbers imported"),
    "ade.device_placed": _l("ABM device placed in a unit"),
    "ade.profile_saved": _l("ADE profile saved"),
    "ade.profile_defined": _l("ADE profile sent to ABM"),
    "ade.profile_assigned": _l("ADE profile assigned to devices in ABM"),
    "ade.synced": _l("Synced with ABM"),
    "ade.enrollment_served": _l("ADE enrollment profile served (machine info verified)"),
    "ade.configuration_finished": _l("Setup Assistant allowed to finish (DeviceConfigured queued)"),
    "device.enrolled_with_ade": _l("Device enrolled by Automated Device Enrollment"),
    "alert.acknowledged": _l("Alert acknowledged"),
    "api_token.created": _l("API token issued"),
    "api_token.revoked": _l("API token revoked"),
    "audit.exported": _l("Audit log exported"),
    "audit.purge": _l("Old audit events purged"),
    "auth.login": _l("Signed in"),
    "auth.login_failed": _l("Sign-in failed"),
    "auth.logout": _l("Signed out"),
    "auth.password_accepted": _l("Password accepted (second factor next)"),
    "ca.created": _l("Device CA created"),
    "command.queued": _l("Command queued"),
    "command.sent": _l("Command delivered to the device"),
    "command.acknowledged": _l("Command acknowledged by the device"),
    "command.error": _l("Command failed on the device"),
    "command.not_now": _l("Device busy, command postponed"),
    "command.cancelled": _l("Command cancelled"),
    "command.expired": _l("Command expired"),
    "command.failed": _l("Device answer refused by the server"),
    "command.foreign_result": _l("Result from another device refused"),
    "command.issued_amapi": _l("Command issued through the Android Management API"),
    "compliance.policy_changed": _l("Compliance policy changed"),
    "os_update.policy_changed": _l("OS update policy changed"),
    "os_update.status_changed": _l("Tablet reported its OS update state"),
    "continuity.plan_reset": _l("Continuity plan reset"),
    "continuity.plan_updated": _l("Continuity plan changed"),
    "continuity.spare_marked": _l("Marked as spare"),
    "continuity.spare_swapped": _l("Spare handed to a unit"),
    "continuity.spare_unmarked": _l("No longer a spare"),
    "device.authenticated": _l("Device authenticated"),
    "device.checked_out": _l("Device unenrolled itself"),
    "device.enrolled": _l("Device enrolled"),
    "device.enrolled_amapi": _l("Tablet enrolled through the Android Management API"),
    "device.amapi_enrollment_refused": _l("Android Management API enrollment with an unknown token refused"),
    "device.enrolled_with_token": _l("Device enrolled with a token"),
    "device.foreign_profiles_found": _l("Unmanaged profiles found on the device"),
    "device.identity_conflict": _l("Device identity conflict"),
    "device.identity_rebound": _l("Device identity rebound"),
    "device.identity_renewal_queued": _l("Device certificate renewal queued"),
    "device.labels_updated": _l("Device labels changed"),
    "device.org_unit_assigned": _l("Device assigned to a unit"),
    "device.reenroll_allowed": _l("Re-enrollment allowed"),
    "device.retired": _l("Device retired"),
    "device.relinquished": _l("Android tablet released from management (data kept)"),
    "device.taken_out_of_service": _l("Device taken out of service"),
    "device.token_updated": _l("Device push token updated"),
    "device.wifi_certificates_revoked": _l("Wi-Fi certificates of the device revoked"),
    "enrollment.identity_issued": _l("Device certificate issued"),
    "enrollment.profile_served": _l("Enrollment profile downloaded"),
    "enrollment.serial_conflict": _l("Serial number conflict at enrollment"),
    "enrollment_token.created": _l("Enrollment token issued"),
    "enrollment_token.revoked": _l("Enrollment token revoked"),
    "enrollment_token.used": _l("Enrollment token used"),
    "incident_policy.updated": _l("Incident policy changed"),
    "android.provisioning_changed": _l("Android provisioning settings changed"),
    "org_unit.created": _l("Unit created"),
    "org_unit.moved": _l("Unit moved"),
    "org_unit.updated": _l("Unit changed"),
    "org_unit.lock_text_changed": _l("Lock-screen text of the unit changed"),
    "user.email_changed": _l("E-mail address changed"),
    "smtp.settings_changed": _l("Mail server settings changed"),
    "smtp.test_sent": _l("Test mail sent"),
    "profile.assigned": _l("Profile assigned"),
    "profile.version_applied": _l("New profile version queued for its devices"),
    "profile.created": _l("Profile created"),
    "profile.device_identity_challenge_issued": _l("Device certificate challenge issued"),
    "profile.exported": _l("Profile exported"),
    "profile.unassigned": _l("Profile unassigned"),
    "profile.updated": _l("Profile changed"),
    "push_certificate.imported": _l("Push certificate imported"),
    "push_certificate.requested": _l("Push certificate requested"),
    "push_certificate.request_decrypted": _l("Signing service's answer opened"),
    "push_certificate.rejected": _l("Push certificate refused"),
    "user.created": _l("User created"),
    "user.disabled": _l("User disabled"),
    "user.enabled": _l("User enabled"),
    "user.password_changed": _l("Password changed"),
    "user.password_reset": _l("Password reset"),
    "user.recovery_codes_replaced": _l("Recovery codes replaced"),
    "user.totp_enrolled": _l("Two-factor set up"),
    "user.totp_reset": _l("Two-factor reset"),
    "user.unlocked": _l("Sign-in unlocked"),
    "user.updated": _l("User changed"),
    "webhook.created": _l("Webhook created"),
    "webhook.disabled": _l("Webhook disabled"),
    "webhook.enabled": _l("Webhook enabled"),
    "webhook.test_sent": _l("Webhook test sent"),
    "wipe_certificate.signed": _l("Wipe certificate signed"),
    "access.out_of_scope": _l("Refused: outside the user's scope"),
    "access.forbidden": _l("Refused: role lacks the permission"),
    "security.csrf_rejected": _l("Refused: forged or expired form"),
}

# Groups offered in the action filter: a prefix matches every action of the group.
GROUPS: dict[str, Any] = {
    "auth.": _l("Sign-in and sign-out"),
    "access.": _l("Refused attempts"),
    "security.": _l("Forged or expired forms"),
    "incident.": _l("Loss and theft incidents"),
    "command.": _l("Commands"),
    "device.": _l("Devices"),
    "enrollment": _l("Enrollment"),
    "profile.": _l("Profiles"),
    "user.": _l("Users"),
    "org_unit.": _l("Org units"),
    "continuity.": _l("Continuity"),
    "audit.": _l("Audit log"),
}

DETAIL_KEYS: dict[str, Any] = {
    "device_id": _l("Device"),
    "status": _l("State"),
    "reason": _l("Reason"),
    "request_type": _l("Command"),
    "purpose": _l("Purpose"),
    "command_uuid": _l("Command UUID"),
    "org_unit_id": _l("Unit"),
    "name_ja": _l("Name"),
    "kind": _l("Kind"),
    "code": _l("Code"),
    "username": _l("User name"),
    "role": _l("Role"),
    "format": _l("Format"),
    "filters": _l("Filters"),
    "method": _l("Method"),
    "path": _l("Address"),
    "endpoint": _l("Screen"),
    "serial_number": _l("Serial number"),
    "caller_name": _l("Caller"),
    "flagged": _l("Flagged"),
    "caller_unit": _l("Caller's unit"),
    "lost_at": _l("Lost at"),
    "lost_place": _l("Where lost"),
    "display_name": _l("Display name"),
    "expires_at": _l("Expires"),
    "from_org_unit_id": _l("From unit"),
    "to_org_unit_id": _l("To unit"),
    "parent_id": _l("Parent unit"),
    "max_uses": _l("Uses"),
    "name_en": _l("Name (English)"),
    "unit_type": _l("Type of unit"),
    "user_id": _l("User"),
    "second_factor": _l("Second factor"),
    "platform": _l("Platform"),
    "note": _l("Note"),
    "session": _l("Session"),
    "subject": _l("Subject"),
    "fingerprint": _l("Fingerprint"),
    "generation": _l("Generation"),
    "wipe_requested": _l("Wipe requested"),
    "message": _l("Message"),
    "phone_number": _l("Phone number"),
    "labels": _l("Labels"),
    "asset_tag": _l("Asset tag"),
    "assigned_user": _l("User"),
    "topic": _l("Topic"),
    "not_after": _l("Valid until"),
    "sha256": _l("SHA-256"),
    "signer": _l("Signer"),
    "profile_id": _l("Profile"),
    "version": _l("Version"),
    "identifier": _l("Identifier"),
    "url": _l("URL"),
    "comment": _l("Comment"),
    "incident_id": _l("Incident"),
    "source_ip": _l("Source address"),
    "changes": _l("Changes"),
    "email": _l("E-mail address"),
    "to": _l("To"),
    "host": _l("Mail server"),
    "port": _l("Port"),
    "tls_mode": _l("Encryption"),
    "from_address": _l("Sender address"),
    "password_stored": _l("Password stored"),
    "error": _l("Error"),
}


def action_label(action: str) -> str:
    """The person's word for an action; an action without a label shows its key (a test keeps
    that from happening for every action the code records)."""
    if action in ACTIONS:
        return str(ACTIONS[action])
    if action.startswith("incident.") and action.removeprefix("incident.") in STEPS:
        return str(STEPS[action.removeprefix("incident.")])
    return action


def known_actions() -> dict[str, str]:
    """Every labelled action and its label (for the filter's choices and the export)."""
    labels = {action: str(label) for action, label in ACTIONS.items()}
    labels.update({f"incident.{step}": str(label) for step, label in STEPS.items()})
    return labels


@dataclass(frozen=True)
class ActorName:
    shown: str
    raw: str


_FIXED_ACTORS: dict[str, Any] = {
    "system": _l("System"),
    "system:profile-delivery": _l("System (profile delivery)"),
    "system:profile-enforcement": _l("System (profile enforcement)"),
    "policy:auto-wipe": _l("Automatic wipe policy"),
    "anonymous": _l("Not signed in"),
}


def _device_label(device: Device) -> str:
    name = device.device_name or device.serial_number or f"#{device.id}"
    return f"{name} ({device.asset_tag})" if device.asset_tag else name


def actor_names(session: Session, actors: Iterable[str]) -> dict[str, ActorName]:
    """Readable names for raw actors ("user:tanaka" → "田中 一郎 (tanaka)"), looked up in one go."""
    raws = set(actors)
    usernames = {_username(a) for a in raws if a.startswith("user:")}
    token_ids = {a.split(":")[1] for a in raws if a.startswith("token:") and a.count(":") >= 2}
    udids = {a.removeprefix("device:") for a in raws if a.startswith("device:")}
    users = (
        {u.username: u for u in session.scalars(select(User).where(User.username.in_(usernames)))}
        if usernames
        else {}
    )
    tokens = (
        {t.public_id: t for t in session.scalars(select(ApiToken).where(ApiToken.public_id.in_(token_ids)))}
        if token_ids
        else {}
    )
    devices = (
        {d.udid: d for d in session.scalars(select(Device).where(Device.udid.in_(udids))) if d.udid}
        if udids
        else {}
    )
    names = {}
    for raw in raws:
        names[raw] = ActorName(_shown(raw, users, tokens, devices), raw)
    return names


def _username(actor: str) -> str:
    # "user:sato (cli:root)" is a person acting through the command line.
    return actor.removeprefix("user:").split(" (", 1)[0]


def _shown(
    raw: str, users: Mapping[str, User], tokens: Mapping[str, ApiToken], devices: Mapping[str, Device]
) -> str:
    if raw in _FIXED_ACTORS:
        return str(_FIXED_ACTORS[raw])
    kind, _sep, rest = raw.partition(":")
    if kind == "user":
        user = users.get(_username(raw))
        name = _username(raw)
        shown = f"{user.display_name} ({name})" if user is not None and user.display_name else name
        return shown + (" " + str(_l("(command line)")) if " (cli:" in raw else "")
    if kind == "token":
        public_id, _sep, token_name = rest.partition(":")
        token = tokens.get(public_id)
        return str(_l("API token “%(name)s”", name=token.name if token is not None else token_name))
    if kind == "device":
        device = devices.get(rest)
        return str(_l("Tablet %(name)s", name=_device_label(device) if device is not None else rest))
    if kind == "cli":
        return str(_l("Command line (%(who)s)", who=rest))
    if kind == "enrollment-token":
        return str(_l("Enrollment token #%(id)s", id=rest))
    if kind == "android-agent":
        return str(_l("Android agent (%(address)s)", address=rest))
    if kind == "scep":
        return str(_l("Certificate request (SCEP)"))
    if kind == "system":
        return str(_l("System (%(part)s)", part=rest))
    return raw


@dataclass(frozen=True)
class Detail:
    label: str
    text: str
    key: str
    # No label of ours: the page shows the stored field name as a field name (code).
    raw_key: bool = False


# "2026-12-13T10:08:57.556001+00:00": a stored moment, shown as Japan time to the second.
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
JST = timezone(timedelta(hours=9), "JST")


def device_names(session: Session, events: Iterable[AuditEvent]) -> dict[int, str]:
    """Names of the devices the events are about (as target or in their details)."""
    ids: set[int] = set()
    for event in events:
        if event.target_type == "device" and (event.target_id or "").isdigit():
            ids.add(int(event.target_id or 0))
        value = (event.details or {}).get("device_id")
        if isinstance(value, int) and not isinstance(value, bool):
            ids.add(value)
    if not ids:
        return {}
    return {d.id: _device_label(d) for d in session.scalars(select(Device).where(Device.id.in_(ids)))}


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(_l("yes")) if value else str(_l("no"))
    if isinstance(value, str) and _MOMENT.fullmatch(value):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    # Nested values as JSON, but with the characters themselves (never \u30c6 escapes).
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def readable_details(details: Mapping[str, Any] | None, devices: Mapping[int, str]) -> list[Detail]:
    rows = []
    for key, value in (details or {}).items():
        label = str(DETAIL_KEYS[key]) if key in DETAIL_KEYS else key
        if key == "device_id" and isinstance(value, int) and value in devices:
            shown = f"{devices[value]} (#{value})"
        elif key == "status" and isinstance(value, str) and value in IncidentStatus.LABELS:
            japanese, english = IncidentStatus.LABELS[value]
            shown = japanese if str(get_locale() or "ja") == "ja" else english
        else:
            shown = _text(value)
        rows.append(Detail(label, shown, key, raw_key=key not in DETAIL_KEYS))
    return rows


_OTHER_ROLES: dict[str, Any] = {
    "system": _l("system"),
    "device": _l("tablet"),
    "unknown": _l("unknown user"),
    "anonymous": _l("not signed in"),
}


def role_text(role: str) -> str:
    """A role as the audit log shows it: people's roles as elsewhere, and the non-people too."""
    if role in ROLES:
        return str(ROLES[role])
    return str(_OTHER_ROLES.get(role, role))
