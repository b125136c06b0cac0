"""Nonces of signed Android agent requests already seen: a captured request is accepted once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class AgentRequestNonce(Base):
    """One signed request's nonce. Unique across all devices and server processes; kept only
    while the request's timestamp is inside the skew window (after that the timestamp check
    refuses a replay on its own), then purged."""

    __tablename__ = "agent_request_nonces"

    id: Mapped[int] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    device_certificate_id: Mapped[int] = mapped_column(
        ForeignKey("device_certificates.id", ondelete="CASCADE"), index=True
    )
    seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
