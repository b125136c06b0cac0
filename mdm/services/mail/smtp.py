"""One e-mail through the mail server: plain, STARTTLS or implicit TLS, with login when a user is
set. Never raises: the caller records the error and the next mail is still tried."""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from mdm.ground.models import SmtpTls
from mdm.services.mail.server import MailServer

# Line breaks of every kind (CR, LF, VT, FF, NEL, U+2028/2029) and other control characters: text
# from outside (a device's name) must never add a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_text(value: str, limit: int = 200) -> str:
    """Outside text fit for a mail header: control characters become one space, then cut."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def send_mail(
    server: MailServer, to: Sequence[str], subject: str, body: str, *, timeout: float = 30.0
) -> str | None:
    """Send one message; None on success, else the error (at most 512 characters)."""
    try:
        message = EmailMessage()
        message["From"] = server.from_address
        message["To"] = ", ".join(to)
        message["Subject"] = header_text(subject)
        message.set_content(body)
    except (ValueError, TypeError, UnicodeError) as exc:
        return f"message not built: {type(exc).__name__}: {exc}"[:512]
    try:
        smtp: smtplib.SMTP
        if server.tls_mode == SmtpTls.TLS:
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
        with smtp:
            if server.tls_mode == SmtpTls.STARTTLS:
                smtp.starttls(context=ssl.create_default_context())
            if server.username:
                smtp.login(server.username, server.password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException, ValueError, UnicodeError) as exc:
        return f"{type(exc).__name__}: {exc}"[:512]
    return None
