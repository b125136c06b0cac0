"""The transactional outbox: work that must happen after a commit, written in that commit.

A row is a fact ("device 42 needs a wake-up"), not a message in a process's memory: it survives
a killed worker, a reload and a database restart, and whoever holds the role drains it (the
in-process dispatcher right after commit; the scheduler's drain job for leftovers). One row per
(topic, subject): asking twice before the first is done asks once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground import clock
from mdm.ground.models.base import Base


class OutboxTopic:
    WAKE_DEVICE = "device.wake"  # subject: Device.id; APNs for Apple, MQTT for Android agents
    # subject: Device.id of an AMAPI-mode tablet whose queued commands go out through
    # devices.issueCommand / devices.delete (mdm.services.amapi.commands), after the commit.
    AMAPI_SEND = "amapi.send"
    # Work a commit leaves to the drain (mdm.ground.outbox_drain), done in the drainer's own
    # transaction together with the deletion of its row: exactly once.
    SETTLE_INVENTORY = "inventory.settle"  # subject: Device.id whose inventory changed (compliance)
    READINESS_DEVICE = "readiness.device"  # subject: Device.id whose change may move its unit's readiness
    READINESS_SEEN = "readiness.seen"  # subject: Device.id seen again lately (matters for a swapped spare)
    READINESS_UNIT = "readiness.unit"  # subject: OrgUnit.id; 0: every unit


class OutboxEntry(Base):
    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("topic", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(Integer)
    # The latest request: a request newer than the attempt that succeeded keeps the row.
    requested_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Due for a drainer from then; also the lease of a claimed row (a drainer that dies lets it
    # fall due again).
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
