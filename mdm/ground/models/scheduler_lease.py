"""The fencing token of the scheduler: a generation that moves each time a scheduler takes over.

The advisory (or file) lock says who may run jobs; the generation proves, inside a job's own
transaction, that the lock was not lost and taken by someone else since the job began.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground.models.base import Base


class SchedulerLease(Base):
    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # "scheduler"
    generation: Mapped[int] = mapped_column(default=0)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime]
