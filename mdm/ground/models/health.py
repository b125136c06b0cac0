"""Health of the parts Hikeshi depends on (APNs, the scheduler), shared across processes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground.models.base import Base


class ServiceHealth(Base):
    __tablename__ = "service_health"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # "apns", "scheduler"
    healthy: Mapped[bool]
    # When the current state began: the start of an outage, or of the healthy stretch.
    since: Mapped[datetime]
    detail: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime]
