"""How the console names an alert and its device, in the reader's language.

Alerts are stored with the title their producer wrote: most in both languages ("日本語 / English"),
a few older producers in English only. The console shows the half in the reader's language, and
for the English-only kinds builds the title again from the alert's details; the device is named
by its name and asset tag, never only by "#1".
"""

from __future__ import annotations

import re
from typing import Any

from flask_babel import get_locale
from flask_babel import gettext as _

from mdm.doors.appctx import db_session
from mdm.ground.models import Alert, Device
from web.console.blueprint import bp
from web.console.labels import RULES

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


def device_label(device: Device) -> str:
    name = device.device_name or device.serial_number or f"#{device.id}"
    return f"{name} ({device.asset_tag})" if device.asset_tag else name


def alert_device(alert: Alert) -> str | None:
    if alert.device_id is None:
        return None
    device = db_session().get(Device, alert.device_id)
    return device_label(device) if device is not None else f"#{alert.device_id}"


def _rebuilt(alert: Alert) -> str | None:
    """A title in the reader's language for the kinds that were stored in English only."""
    details: dict[str, Any] = alert.details or {}
    name = alert_device(alert) or "—"
    incident = details.get("incident_id", "?")
    if alert.kind == "incident.auto_wipe_reminder":
        return _(
            "Auto-wipe of %(name)s is due soon (incident %(id)s): recover it or decide now",
            name=name,
            id=incident,
        )
    if alert.kind == "incident.auto_wiped":
        return _(
            "%(name)s is being wiped by its unit's auto-wipe policy (incident %(id)s)", name=name, id=incident
        )
    if alert.kind == "audit.chain_broken":
        return _(
            "Audit trail does not verify at event id %(id)s; the scheduled purge was refused",
            id=details.get("broken_id", "?"),
        )
    if alert.kind == "push_certificate.expiring":
        return _(
            "APNs push certificate %(topic)s expires in %(days)s days (%(date)s)",
            topic=details.get("topic", ""),
            days=details.get("days_left", "?"),
            date=str(details.get("not_after", ""))[:10],
        )
    if alert.kind == "ade.token_expiring":
        return _(
            "ABM server token expires in %(days)s days (%(date)s)",
            days=details.get("days_left", "?"),
            date=str(details.get("access_token_expiry", ""))[:10],
        )
    if alert.kind == "vpp.token_expiring":
        return _(
            "Apps and Books content token expires in %(days)s days (%(date)s)",
            days=details.get("days_left", "?"),
            date=str(details.get("expires_at", ""))[:10],
        )
    if alert.kind == "vpp.other_mdm":
        return _("The Apps and Books content token is in use by another MDM: remove it there first")
    if alert.kind == "vpp.location_changed":
        return _(
            "The Apps and Books content token is for another location (%(new)s, was %(old)s)",
            new=details.get("to") or "?",
            old=details.get("from") or "?",
        )
    if alert.kind == "backup.failed":
        return _("Scheduled backup failed: %(error)s", error=details.get("error", ""))
    if alert.kind == "apns.outage":
        return _("APNs unreachable: devices are not woken (commands wait for a check-in)")
    if alert.kind == "apns.recovered":
        return _("APNs answers again: waiting wake-ups are being sent")
    return None


def alert_title(alert: Alert) -> str:
    japanese = str(get_locale() or "ja") == "ja"
    head, sep, tail = alert.title.partition(" / ")
    if sep and _JAPANESE.search(head):
        return head if japanese else tail
    return _rebuilt(alert) or alert.title


@bp.app_context_processor
def _alert_text() -> dict[str, object]:
    return {"alert_title": alert_title, "alert_device": alert_device}


@bp.app_template_filter("rule_text")
def rule_text(rule: str) -> str:
    """A compliance rule by its name in the reader's language (continuity reasons list rule ids)."""
    return str(RULES.get(rule, rule))
