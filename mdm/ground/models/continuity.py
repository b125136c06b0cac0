"""Continuity: each unit's plan, the spare tablets kept at stations, the readiness computed from
them, every change of readiness (the dispatch feed) and its webhook deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base, JSONType


class ReadinessState:
    """Ordered from best to worst: a rollup is its worst unit."""

    READY = "ready"
    DEGRADED = "degraded"  # below plan, a spare is available at its station
    CRITICAL = "critical"  # below plan, no spare

    ORDER = (READY, DEGRADED, CRITICAL)
    LABELS = {
        READY: ("運用可", "Ready"),
        DEGRADED: ("縮退", "Degraded"),
        CRITICAL: ("危機", "Critical"),
    }

    @classmethod
    def worst(cls, states: list[str]) -> str:
        return max(states, key=cls.ORDER.index, default=cls.READY)


class ContinuityPlan(Base):
    """One unit's plan; a unit without a row follows the defaults of its unit type."""

    __tablename__ = "continuity_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), unique=True)
    required_working: Mapped[int]
    max_seen_minutes: Mapped[int]
    min_battery_percent: Mapped[int]
    require_compliant: Mapped[bool] = mapped_column(default=True)
    # Compliance rules that do not make a tablet "not working" for this unit.
    ignored_rules: Mapped[list[str]] = mapped_column(JSONType, default=list)
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class SpareDevice(Base):
    """A tablet kept as a spare; it belongs to the station (or branch) it is assigned to.

    Swapped into a unit, it is no longer a spare: the row stays, naming the unit, only until the
    tablet works there: checked in after the swap, holding the unit's profiles (until then the
    unit counts it as help on its way).
    """

    __tablename__ = "continuity_spares"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), unique=True)
    marked_by: Mapped[str] = mapped_column(String(255))
    marked_at: Mapped[datetime] = mapped_column(default=clock.now)
    note: Mapped[str] = mapped_column(String(255), default="")
    swapped_to_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id", ondelete="SET NULL"))
    swapped_at: Mapped[datetime | None]
    swap_incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"))


class UnitReadinessState(Base):
    """The last published readiness of one unit: exactly what its latest event said."""

    __tablename__ = "unit_readiness"
    # The continuity board's rollups and worst-first order read only these: answered from the
    # index, not the rows with their details (migration 0021).
    __table_args__ = (
        Index("ix_unit_readiness_board", "org_unit_id", "state", "station_id", "spares_available"),
    )

    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    working: Mapped[int]
    required: Mapped[int]
    spares_available: Mapped[int]
    station_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id", ondelete="SET NULL"))
    # {"missing", "incoming", "plan", "station"}: what a page of units carries, bounded whatever
    # the unit's size ("missing" holds the first MISSING_SHOWN of missing_devices, see
    # mdm.services.continuity.readiness).
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Every tablet that does not count, worst first: [{device_id, name, serial_number,
    # reasons: [{code, ja, en, ...}]}]. Read only for one unit (its missing list, paged) and by a
    # recompute comparing snapshots, never for a page of units: a unit of 1,000 tablets is 110 KB.
    missing_devices: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, deferred=True)
    missing_total: Mapped[int] = mapped_column(default=0)
    last_event_id: Mapped[int | None]
    changed_at: Mapped[datetime] = mapped_column(default=clock.now)


class ReadinessEvent(Base):
    """One change of a unit's readiness. Ids only grow: the stream, webhooks and pollers share them."""

    __tablename__ = "readiness_events"
    __table_args__ = (Index("ix_readiness_events_unit_id", "org_unit_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id", ondelete="SET NULL"))
    previous_state: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    cause_code: Mapped[str] = mapped_column(String(64))
    cause_ja: Mapped[str] = mapped_column(String(512))
    cause_en: Mapped[str] = mapped_column(String(512))
    # The whole message as published (SSE data, webhook body, history).
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)


class ReadinessDelivery(Base):
    """One readiness event to one webhook: the exact body signed, and when to try next."""

    __tablename__ = "readiness_deliveries"
    __table_args__ = (Index("ix_readiness_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("readiness_events.id", ondelete="CASCADE"), index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
