"""Compliance: per-unit policy, findings that open and close themselves, each device's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class Severity:
    """Ordered: a device's compliance is its worst open finding."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    ORDER = (OK, INFO, WARNING, CRITICAL)

    @classmethod
    def rank(cls, severity: str) -> int:
        return cls.ORDER.index(severity)


class CompliancePolicy(Base):
    """What a unit requires of its tablets. The row with org_unit_id NULL is the default."""

    __tablename__ = "compliance_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", ondelete="CASCADE"), unique=True
    )
    minimum_os_version: Mapped[str | None] = mapped_column(String(32))
    offline_limit_hours: Mapped[int | None]
    require_supervision: Mapped[bool | None]
    inventory_interval_hours: Mapped[int | None]
    certificate_warning_days: Mapped[int | None]
    # Oldest Android security patch level accepted, "YYYY-MM-DD" as Android reports it.
    minimum_android_security_patch: Mapped[str | None] = mapped_column(String(10))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class ComplianceFinding(Base):
    """One rule broken by one device about one subject (an app, a certificate ...).

    Open while `closed_at` is NULL; closed by evaluation when the condition clears, and a new
    row opens if it comes back, so the history of each episode stays.
    """

    __tablename__ = "compliance_findings"
    __table_args__ = (Index("ix_compliance_findings_open", "device_id", "closed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(255), default="")
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(512))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opened_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    closed_at: Mapped[datetime | None]


class DeviceCompliance(Base):
    """Each device's current state (worst open finding), kept so lists filter on an index."""

    __tablename__ = "device_compliance"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    open_findings: Mapped[int] = mapped_column(default=0)
    evaluated_at: Mapped[datetime] = mapped_column(default=clock.now)
