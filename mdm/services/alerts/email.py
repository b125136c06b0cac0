"""Alert e-mail to administrators through SMTP (optional: needs smtp_host and alert_email_to).

Like webhooks, in three steps so no transaction stays open while the mail server answers:
`due_alert_emails` (read), `send_alert_email` (SMTP only), `record_email` (write the outcome).
Only alerts raised in the last day are mailed, so turning e-mail on never floods the inbox
with old alerts.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.models import Alert, Device, Severity

MAIL_WINDOW = timedelta(days=1)
# Line breaks of every kind (CR, LF, VT, FF, NEL, U+2028/2029) and other control characters: a
# device names its apps, and an app called "x\nBcc: someone" must never add a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAIL_SEVERITIES = (Severity.WARNING, Severity.CRITICAL)


@dataclass(frozen=True)
class OutgoingEmail:
    alert_id: int
    subject: str
    body: str


def email_enabled(settings: Settings) -> bool:
    return bool(settings.smtp_host and settings.alert_email_to)


def due_alert_emails(session: Session, *, max_attempts: int, limit: int = 50) -> list[OutgoingEmail]:
    rows = session.execute(
        select(Alert, Device)
        .outerjoin(Device, Device.id == Alert.device_id)
        .where(
            Alert.emailed_at.is_(None),
            Alert.email_attempts < max_attempts,
            Alert.severity.in_(MAIL_SEVERITIES),
            Alert.created_at >= clock.now() - MAIL_WINDOW,
        )
        .order_by(Alert.id)
        .limit(limit)
    ).all()
    out = []
    for alert, device in rows:
        lines = [
            alert.title,
            "",
            f"Severity / 重要度: {alert.severity}",
            f"Kind / 種別: {alert.kind}",
            f"Raised / 発生: {alert.created_at:%Y-%m-%d %H:%M} UTC",
        ]
        if device is not None:
            lines.append(
                f"Device / 端末: {device.device_name or '-'} "
                f"(serial {device.serial_number or '-'}, UDID {device.udid})"
            )
        for key, value in sorted(alert.details.items()):
            lines.append(f"{key}: {value}")
        subject = header_text(f"[Hikeshi MDM][{alert.severity}] {alert.title}")
        out.append(OutgoingEmail(alert.id, subject, "\n".join(lines) + "\n"))
    return out


def header_text(value: str, limit: int = 200) -> str:
    """Outside text fit for a mail header: control characters become one space, then cut."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def send_alert_email(settings: Settings, outgoing: OutgoingEmail, *, timeout: float = 30.0) -> str | None:
    """Send one alert mail; returns None on success, else the error. Never raises: one mail that
    cannot be built or sent must not stop the mails after it."""
    try:
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = ", ".join(settings.alert_email_to)
        message["Subject"] = header_text(outgoing.subject)
        message.set_content(outgoing.body)
    except (ValueError, TypeError, UnicodeError) as exc:
        return f"message not built: {type(exc).__name__}: {exc}"[:512]
    try:
        with smtplib.SMTP(settings.smtp_host or "", settings.smtp_port, timeout=timeout) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException, ValueError, UnicodeError) as exc:
        return f"{type(exc).__name__}: {exc}"[:512]
    return None


def record_email(session: Session, alert_id: int, error: str | None) -> None:
    alert = session.get(Alert, alert_id)
    if alert is None or alert.emailed_at is not None:
        return
    alert.email_attempts += 1
    if error is None:
        alert.emailed_at = clock.now()
        alert.email_error = None
    else:
        alert.email_error = error
