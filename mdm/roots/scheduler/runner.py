"""Running the scheduler: wait for the lock, run the jobs while it is held, stop when it is lost.

A second scheduler started by mistake waits at the lock instead of running jobs twice, and takes
over within one poll interval when the active one dies.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from mdm.ground.config import Settings
from mdm.ground.db import ensure_migrated, make_engine, make_session_factory, transaction
from mdm.ground.health import mark_health
from mdm.roots.scheduler.fencing import FencedOut, fenced_factory, take_over
from mdm.roots.scheduler.jobs import JOBS, JobContext, run_job
from mdm.roots.scheduler.lock import LockUnreachable, SchedulerLock, scheduler_lock_for
from mdm.roots.wiring import wire

log = logging.getLogger(__name__)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_scheduler(settings: Settings, stop: threading.Event, *, jobs: list[str] | None = None) -> None:
    """Block until `stop` is set: wait for the lock, then run the jobs while holding it."""
    engine = make_engine(settings.database_url)
    ensure_migrated(engine)  # never run jobs against a schema the code does not match
    factory = make_session_factory(engine)
    # The app's wiring (mdm.roots.wiring): a job's commit recomputes readiness, sends its pushes.
    wiring = wire(factory, settings)
    holder = holder_name()
    lock = scheduler_lock_for(settings.database_url, settings.instance_path)
    poll = settings.scheduler_lock_poll_seconds
    try:
        while not stop.is_set():
            try:
                acquired = lock.try_acquire()
            except LockUnreachable as exc:
                # Not "another scheduler is active": the operator must look at the database.
                log.warning("scheduler %s: cannot reach the database for the lock: %s; waiting", holder, exc)
                stop.wait(poll)
                continue
            if not acquired:
                log.info("scheduler %s: another scheduler is active; waiting", holder)
                stop.wait(poll)
                continue
            try:
                generation = take_over(factory, holder)
            except SQLAlchemyError as exc:
                log.warning("scheduler %s: cannot record the take-over: %s", holder, exc)
                lock.release()
                stop.wait(poll)
                continue
            log.info("scheduler %s: active (generation %d)", holder, generation)
            fenced = fenced_factory(factory, generation)  # derived from factory: wired alike
            ctx = JobContext(
                fenced,
                settings,
                holder,
                wiring.dispatcher,
                wiring.commands,
                stopping=stop,
                amapi_client=wiring.amapi.client_factory if wiring.amapi is not None else None,
            )
            try:
                _run_while_held(ctx, lock, stop, poll, jobs or list(JOBS))
            finally:
                lock.release()
    finally:
        wiring.close()
        engine.dispose()


def _heartbeat(ctx: JobContext) -> None:
    """Tell /readyz the active scheduler is alive; a silent one is reported stopped there."""
    try:
        with transaction(ctx.factory) as session:
            mark_health(session, "scheduler", True, f"active: {ctx.holder}")
    except (SQLAlchemyError, FencedOut) as exc:
        # The database being away is /readyz's own finding; jobs go on when it is back.
        log.warning("scheduler %s: heartbeat not recorded: %s", ctx.holder, exc)


def _run_while_held(
    ctx: JobContext, lock: SchedulerLock, stop: threading.Event, poll: float, names: list[str]
) -> None:
    scheduler = BackgroundScheduler(
        timezone=UTC,
        # Coalesce missed runs into one, never two of the same job at once.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    tick = ctx.settings.scheduler_tick_seconds
    for name in names:
        _, ticks = JOBS[name]
        scheduler.add_job(
            run_job,
            IntervalTrigger(seconds=ticks * tick, timezone=UTC),
            args=(ctx, name),
            id=name,
            name=name,
            next_run_time=datetime.now(UTC),  # the new active scheduler catches up at once
        )
    scheduler.start()
    try:
        _heartbeat(ctx)
        while not stop.wait(poll):
            if not lock.still_held():
                log.error("scheduler %s: lost the lock; stopping jobs", ctx.holder)
                return
            _heartbeat(ctx)
    finally:
        scheduler.shutdown(wait=True)
