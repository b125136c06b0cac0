"""Outgoing e-mail: the SMTP server set in the console, and the mails waiting for it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class SmtpTls:
    NONE = "none"  # plain SMTP (a relay on the local network)
    STARTTLS = "starttls"  # SMTP, then STARTTLS (port 587)
    TLS = "tls"  # TLS from the first byte (SMTPS, port 465)

    ALL = (NONE, STARTTLS, TLS)


class SmtpSettings(Base):
    """The mail server set in the console (one row, id 1). While it has no host, the server's
    environment settings (HIKESHI_SMTP_HOST and the rest) apply. The password is sealed
    (mdm.ground.secretbox)."""

    __tablename__ = "smtp_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=587)
    tls_mode: Mapped[str] = mapped_column(String(16), default=SmtpTls.STARTTLS)
    username: Mapped[str | None] = mapped_column(String(255))
    password_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    from_address: Mapped[str | None] = mapped_column(String(254))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_by: Mapped[str] = mapped_column(String(255), default="")


class MailStatus:
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt


class OutgoingMail(Base):
    """One e-mail to one person, written in the transaction of what it tells (a wipe request) and
    sent after commit by the scheduler's mail job, so a mail server that is down loses nothing."""

    __tablename__ = "outgoing_mails"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    # A console path the mail links to; the sender puts the public URL in front of it.
    link_path: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=MailStatus.PENDING, index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(512))
