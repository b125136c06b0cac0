"""The mail server Hikeshi sends through, set in the console (issue #19) and stored in one row.

While the console has no host stored, the environment settings (HIKESHI_SMTP_HOST and the rest)
apply, so an installation configured by environment keeps mailing. The password is sealed at rest
(mdm.ground.secretbox, purpose `smtp-password`) and never shown or audited, only whether one is
stored. Every change is audited as smtp.settings_changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import SmtpSettings, SmtpTls
from mdm.ground.secretbox import SecretBoxError, unseal
from mdm.ground.settings_row import SealedSecret, apply_settings

SEALED_AS = "smtp-password"
SEALED_PASSWORD = SealedSecret("password_sealed", SEALED_AS, "password")
ROW_ID = 1
HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253})$|^\[[0-9A-Fa-f:.]+\]$")
ADDRESS_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
FIELDS = ("host", "port", "tls_mode", "username", "from_address")


class MailServerInputError(ValueError):
    """Refused input; `fields` maps each form field to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(fields.items())))
        self.fields = fields


@dataclass(frozen=True)
class MailServer:
    host: str
    port: int
    tls_mode: str
    username: str | None
    password: str | None
    from_address: str
    source: str  # "console" or "environment"


def stored_row(session: Session) -> SmtpSettings | None:
    return session.get(SmtpSettings, ROW_ID)


def _password(settings: Settings, row: SmtpSettings) -> str | None:
    if row.password_sealed is None:
        return None
    try:
        return unseal(settings.secret_key, SEALED_AS, row.password_sealed).decode("utf-8")
    except SecretBoxError:
        return None  # sealed under another instance secret: as good as none (the test mail says so)


def mail_server(session: Session, settings: Settings) -> MailServer | None:
    """The server to send through, or None when neither the console nor the environment set one."""
    row = stored_row(session)
    if row is not None and row.host:
        return MailServer(
            row.host,
            row.port,
            row.tls_mode,
            row.username,
            _password(settings, row),
            row.from_address or settings.smtp_from,
            "console",
        )
    if settings.smtp_host:
        return MailServer(
            settings.smtp_host,
            settings.smtp_port,
            SmtpTls.STARTTLS if settings.smtp_starttls else SmtpTls.NONE,
            settings.smtp_username,
            settings.smtp_password,
            settings.smtp_from,
            "environment",
        )
    return None


def _one_line(value: str, limit: int) -> bool:
    return len(value) <= limit and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def _clean(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(values) - set(FIELDS))
    for name in unknown:
        problems[name] = ["unknown field"]
    text = {k: (str(v).strip() if v is not None else "") for k, v in values.items() if k in FIELDS}
    clean: dict[str, Any] = {}
    host = text.get("host", "")
    if host and not (HOST_RE.match(host) and _one_line(host, 255)):
        problems["host"] = ["a host name or address"]
    clean["host"] = host or None
    port = text.get("port", "") or "587"
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        problems["port"] = ["a port number from 1 to 65535"]
    else:
        clean["port"] = int(port)
    mode = text.get("tls_mode", "") or SmtpTls.STARTTLS
    if mode not in SmtpTls.ALL:
        problems["tls_mode"] = ["one of " + ", ".join(SmtpTls.ALL)]
    clean["tls_mode"] = mode
    username = text.get("username", "")
    if username and not _one_line(username, 255):
        problems["username"] = ["one line of at most 255 characters"]
    clean["username"] = username or None
    sender = text.get("from_address", "")
    if sender and not (len(sender) <= 254 and ADDRESS_RE.match(sender)):
        problems["from_address"] = ["an e-mail address"]
    clean["from_address"] = sender or None
    if clean["host"] and not clean["from_address"]:
        problems["from_address"] = ["required with a mail server"]
    return clean, problems


def save_mail_server(
    session: Session,
    settings: Settings,
    actor: Actor,
    values: dict[str, Any],
    *,
    password: str | None = None,
    clear_password: bool = False,
) -> list[str]:
    """Store the console's mail server (a blank host: back to the environment's); audited without
    the password. Returns the names of the fields that changed. Never commits."""
    clean, problems = _clean(values)
    if password is not None and not _one_line(password, 255):
        problems["password"] = ["one line of at most 255 characters"]
    if problems:
        raise MailServerInputError(problems)
    row = stored_row(session)
    if row is None:
        row = SmtpSettings(id=ROW_ID)
        session.add(row)
        session.flush()
    details: dict[str, Any] = {
        name: {"from": getattr(row, name), "to": clean[name]}
        for name in FIELDS
        if getattr(row, name) != clean[name]
    }
    changed = apply_settings(
        row,
        {name: clean[name] for name in FIELDS},
        secret_key=settings.secret_key,
        sealed=SEALED_PASSWORD,
        secret=password,
        clear_secret=clear_password,
        changed_by=actor.name,
    )
    if not changed:
        return []
    session.flush()
    audit: dict[str, Any] = {"changes": details}
    if "password" in changed:
        # Whether one is stored, never the value.
        audit["password_stored"] = row.password_sealed is not None
    record_event(session, actor, "smtp.settings_changed", "settings", "smtp", audit)
    return changed
