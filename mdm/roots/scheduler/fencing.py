"""Fencing: a scheduler that lost its lock cannot finish a job.

The lock (mdm.roots.scheduler.lock) can be lost without the holder noticing at once: a PostgreSQL
restart or failover drops the connection holding the advisory lock, and another scheduler takes
it within its poll interval while the first is still inside a job. So each time a scheduler
takes the lock it moves the generation in the `scheduler_lease` row and keeps the number it got,
and every transaction of its jobs compares that number with the row before it commits (holding a
share lock on the row until the commit, so a take-over waits for it or is seen by it). A job of
the old holder then fails at its first commit and nothing it did is kept.
"""

from __future__ import annotations

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.db import is_postgres, transaction
from mdm.ground.models import SchedulerLease

LEASE = "scheduler"


class FencedOut(RuntimeError):
    """Another scheduler took over since this one took the lock: its work must not commit."""


def take_over(factory: sessionmaker[Session], holder: str) -> int:
    """Move the generation on (this scheduler now holds the lock) and return it: the token."""
    for _ in range(3):
        try:
            with transaction(factory) as session:
                lease = session.get(SchedulerLease, LEASE, with_for_update=True)
                if lease is None:
                    lease = SchedulerLease(name=LEASE, generation=0, holder=holder, acquired_at=clock.now())
                    session.add(lease)
                lease.generation += 1
                lease.holder = holder[:128]
                lease.acquired_at = clock.now()
                session.flush()
                return lease.generation
        except IntegrityError:  # two first-ever take-overs raced to create the row
            continue
    raise RuntimeError("could not record the scheduler take-over")


def current_generation(session: Session) -> int | None:
    stmt = select(SchedulerLease.generation).where(SchedulerLease.name == LEASE)
    if is_postgres(session):
        stmt = stmt.with_for_update(read=True)
    return session.scalar(stmt)


def fenced_factory(factory: sessionmaker[Session], generation: int) -> sessionmaker[Session]:
    """Sessions like `factory`'s that refuse to commit once the generation has moved on.

    Their class derives from `factory`'s, so they run what the wiring (mdm.roots.wiring) connected
    to `factory`: its listeners and hooks, the fence check after them."""
    fenced = sessionmaker(
        factory.kw["bind"],
        class_=factory.class_,
        expire_on_commit=factory.kw.get("expire_on_commit", True),
    )

    @event.listens_for(fenced, "before_commit")
    def _check_fence(session: Session) -> None:
        current = current_generation(session)
        if current != generation:
            raise FencedOut(
                f"scheduler generation {generation} was superseded by {current}: another scheduler "
                "holds the lock; this job's work is rolled back"
            )

    return fenced
