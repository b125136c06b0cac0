"""Alert e-mail to administrators through SMTP (optional: needs a mail server, set in the console
or by the environment, and alert_email_to). The SMTP conversation is mdm.services.mail.smtp's.

Like webhooks, in three steps so no transaction stays open while the mail server answers:
`due_alert_emails` (read), `send_alert_email` (SMTP only), `record_email` (write the outcome).
Only alerts raised in the last day are mailed, so turning e-mail on never floods the inbox
with old alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.models import Alert, Device, Severity
from mdm.services.mail.server import MailServer
from mdm.services.mail.smtp import header_text, send_mail

MAIL_WINDOW = timedelta(days=1)
MAIL_SEVERITIES = (Severity.WARNING, Severity.CRITICAL)


@dataclass(frozen=True)
class OutgoingEmail:
    alert_id: int
    subject: str
    body: str


def email_enabled(server: MailServer | None, settings: Settings) -> bool:
    """Alert e-mail is on when a mail server is set (console or environment) and a recipient is."""
    return server is not None and bool(settings.alert_email_to)


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


def send_alert_email(
    server: MailServer, recipients: Sequence[str], outgoing: OutgoingEmail, *, timeout: float = 30.0
) -> str | None:
    """Send one alert mail; returns None on success, else the error. Never raises: one mail that
    cannot be built or sent must not stop the mails after it."""
    return send_mail(server, recipients, outgoing.subject, outgoing.body, timeout=timeout)


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
