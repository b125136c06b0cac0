"""Fencing (issue 16, defect 3): the connection holding the scheduler's advisory lock is killed
in the middle of a job; the second scheduler takes over and runs the job; the first one's job
cannot commit anything. No job's work is kept twice."""

from __future__ import annotations

import queue
import threading
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, text

from mdm.ground.db import make_session_factory, transaction
from mdm.ground.models import Alert, JobRun, SchedulerLease
from mdm.roots.scheduler import jobs as scheduler_jobs
from mdm.roots.scheduler.fencing import FencedOut, fenced_factory, take_over
from mdm.roots.scheduler.lock import ADVISORY_KEY
from mdm.roots.scheduler.runner import run_scheduler
from tests.faults.harness import wait_for

PROBE = "fence.probe"


def test_a_superseded_generation_cannot_commit(session_factory):  # type: ignore[no-untyped-def]
    first = take_over(session_factory, "node-a:1")
    fenced = fenced_factory(session_factory, first)
    with transaction(fenced) as s:
        s.add(Alert(kind=PROBE, severity="info", title="first", details={}))
    assert take_over(session_factory, "node-b:2") == first + 1
    with pytest.raises(FencedOut), transaction(fenced) as s:
        s.add(Alert(kind=PROBE, severity="info", title="stale", details={}))
    with session_factory() as s:
        assert [a.title for a in s.scalars(select(Alert).where(Alert.kind == PROBE))] == ["first"]


@pytest.mark.slow
def test_killing_the_lock_connection_mid_job_runs_no_job_twice(settings, engine, monkeypatch):  # type: ignore[no-untyped-def]
    if engine.dialect.name != "postgresql":
        pytest.skip(
            "the advisory lock's connection is PostgreSQL's; SQLite's file lock dies only with its process"
        )
    entered: queue.Queue[int] = queue.Queue()
    release_first = threading.Event()

    def probe_job(ctx: Any) -> dict[str, Any]:
        """A job whose work is one row, written inside its transaction; the first run stalls
        there (as a long job would) until the test lets it go."""
        with transaction(ctx.factory) as s:
            # Read without a lock: a real job touches the lease row only in its commit's check.
            generation = s.scalar(select(SchedulerLease.generation))
            s.add(Alert(kind=PROBE, severity="info", title=f"generation {generation}", details={}))
            s.flush()
            entered.put(generation)
            if generation == 1:
                release_first.wait(60)
        return {"generation": generation}

    monkeypatch.setitem(scheduler_jobs.JOBS, "fence_probe", (probe_job, 1))
    conf = replace(settings, scheduler_lock_poll_seconds=0.2, scheduler_tick_seconds=3600, push_enabled=False)
    stops = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(
            target=run_scheduler, args=(conf, stop), kwargs={"jobs": ["fence_probe"]}, daemon=True
        )
        for stop in stops
    ]
    threads[0].start()
    assert entered.get(timeout=30) == 1  # scheduler A is inside the job, its transaction open
    threads[1].start()  # scheduler B waits at the lock
    try:
        # A PostgreSQL restart or failover, as far as A's lock is concerned.
        with engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid = :k AND granted"
                ),
                {"k": ADVISORY_KEY},
            ).all()
        assert killed == [(True,)]
        assert entered.get(timeout=30) == 2  # B took over (generation 2) and ran the job
        factory = make_session_factory(engine)
        wait_for(
            lambda: _runs(factory).get(2) == "ok",
            30,
            "B's run to finish",
        )
        release_first.set()  # A's job now tries to commit its work
        wait_for(lambda: _runs(factory).get(1) == "fenced", 30, "A's run to be refused")
        with factory() as s:
            kept = [a.title for a in s.scalars(select(Alert).where(Alert.kind == PROBE))]
        assert kept == ["generation 2"]  # only the current holder's work was kept
    finally:
        release_first.set()
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(30)
    assert not any(t.is_alive() for t in threads)


def _runs(factory) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """generation → outcome of the probe job's runs."""
    with factory() as s:
        runs = s.scalars(select(JobRun).where(JobRun.job == "fence_probe").order_by(JobRun.id)).all()
    return {index + 1: run.outcome for index, run in enumerate(runs)}
