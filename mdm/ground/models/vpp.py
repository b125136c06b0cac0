"""Apple's Apps and Books (volume purchase, "VPP") for one location: its token, the apps it owns
(assets and their license counts), the licenses assigned to device serial numbers, and the
service's asynchronous events that confirm them.

The token is a bearer secret: it is sealed (mdm.ground.secretbox); only the organisation,
location and expiry an operator must see are kept in clear.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class VppToken(Base):
    """An uploaded location token (`.vpptoken`). Only the newest active row is used."""

    __tablename__ = "vpp_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The whole file as uploaded (it is itself the bearer value), sealed.
    token_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    org_name: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # The location as the service names it (client config): learnt at the first sync.
    location_name: Mapped[str | None] = mapped_column(String(255))
    location_uid: Mapped[str | None] = mapped_column(String(64))
    country_code: Mapped[str | None] = mapped_column(String(8))
    # Set when this token's location is not the one of the token it replaced.
    replaced_location: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    uploaded_at: Mapped[datetime] = mapped_column(default=clock.now)
    uploaded_by: Mapped[str] = mapped_column(String(255))
    last_sync_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(512))
    last_error_at: Mapped[datetime | None]


class VppAsset(Base):
    """An app (or book) the location owns licenses for, as the service last counted them."""

    __tablename__ = "vpp_assets"
    __table_args__ = (UniqueConstraint("adam_id", "pricing_param", name="uq_vpp_assets_adam_pricing"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    adam_id: Mapped[str] = mapped_column(String(32), index=True)
    # STDQ (standard quality) or PLUS (high quality): part of the asset's identity at Apple.
    pricing_param: Mapped[str] = mapped_column(String(16))
    product_type: Mapped[str | None] = mapped_column(String(32))
    device_assignable: Mapped[bool] = mapped_column(default=True)
    revocable: Mapped[bool] = mapped_column(default=True)
    supported_platforms: Mapped[list[str]] = mapped_column(JSON, default=list)
    total_count: Mapped[int] = mapped_column(default=0)
    assigned_count: Mapped[int] = mapped_column(default=0)
    available_count: Mapped[int] = mapped_column(default=0)
    retired_count: Mapped[int] = mapped_column(default=0)
    synced_at: Mapped[datetime] = mapped_column(default=clock.now)


class VppAssignmentState:
    PENDING = "pending"  # associate requested; its event not complete yet
    ASSIGNED = "assigned"
    RELEASING = "releasing"  # disassociate requested; its event not complete yet
    FAILED = "failed"  # the service refused it (reason says why)

    ALL = (PENDING, ASSIGNED, RELEASING, FAILED)


class VppAssignment(Base):
    """One app license held (or asked) for one device serial number: device-based, no Apple ID.
    A released license is deleted (the audit keeps its history)."""

    __tablename__ = "vpp_assignments"
    __table_args__ = (UniqueConstraint("adam_id", "serial_number", name="uq_vpp_assignments_adam_serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    adam_id: Mapped[str] = mapped_column(String(32))
    pricing_param: Mapped[str] = mapped_column(String(16))
    serial_number: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    event_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reason: Mapped[str | None] = mapped_column(String(512))
    requested_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class VppEvent(Base):
    """An asynchronous operation the service accepted (associate / disassociate), polled until
    it completes."""

    __tablename__ = "vpp_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(16))  # ASSOCIATE or DISASSOCIATE
    status: Mapped[str] = mapped_column(String(16), index=True)  # PENDING, COMPLETE or FAILED
    num_requested: Mapped[int | None]
    num_completed: Mapped[int | None]
    failures: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    polls: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    checked_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
