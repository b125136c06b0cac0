"""APNs push certificates and the record of every push attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class PushCertificate(Base):
    __tablename__ = "push_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), index=True)
    subject: Mapped[str] = mapped_column(String(512))
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    cert_pem: Mapped[str] = mapped_column(Text)
    key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(default=True, index=True)
    imported_at: Mapped[datetime] = mapped_column(default=clock.now)
    imported_by: Mapped[str] = mapped_column(String(255))
    # Set when APNs refuses the certificate (403); shown to operators until a push succeeds.
    last_error: Mapped[str | None] = mapped_column(String(255))
    last_error_at: Mapped[datetime | None]


class PushAttempt(Base):
    __tablename__ = "push_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    attempt: Mapped[int] = mapped_column(default=1)
    status_code: Mapped[int | None]  # None: no answer (connection error, timeout)
    reason: Mapped[str | None] = mapped_column(String(255))
    apns_id: Mapped[str | None] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
