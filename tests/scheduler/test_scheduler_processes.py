"""Exactly one scheduler: two real `hikeshi scheduler` processes on the same database (PostgreSQL
advisory lock, or the file lock on SQLite); only one runs jobs, and when it is killed the other
takes over within a minute (here within seconds: the lock poll interval is configurable)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from mdm.ground.models import JobRun
from mdm.services.alerts.service import raise_alert
from mdm.services.alerts.webhooks import create_webhook
from tests.alerts.receiver import webhook_receiver
from tests.inventory.helpers import ADMIN

HIKESHI = str(Path(sys.executable).with_name("hikeshi"))


def _start(settings, tmp_path: Path, name: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(tmp_path / f"instance-{name}"),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_SCHEDULER_TICK_SECONDS": "1",
        "HIKESHI_SCHEDULER_LOCK_POLL": "0.5",
        "HIKESHI_PUSH_ENABLED": "0",
        "HIKESHI_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
    }
    with open(tmp_path / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [HIKESHI, "scheduler", "--job", "webhook_delivery", "--job", "offline_check"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _runs(session) -> list[JobRun]:
    session.rollback()
    session.expire_all()
    return list(session.scalars(select(JobRun).order_by(JobRun.id)))


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_two_schedulers_run_each_job_once_and_take_over(session, settings, tmp_path):
    with webhook_receiver() as receiver:
        create_webhook(
            session,
            ADMIN,
            "dispatch",
            receiver.url,
            secret_key=settings.secret_key,
            allow_networks=settings.webhook_allow_networks,
        )
        raise_alert(session, "test.exactly_once", "warning", "deliver me once")
        session.commit()
        first, second = _start(settings, tmp_path, "a"), _start(settings, tmp_path, "b")
        try:
            assert _wait(lambda: len(_runs(session)) >= 6, 30), (tmp_path / "a.log").read_text()
            time.sleep(2)
            runs = _runs(session)
            holders = {r.holder for r in runs}
            assert len(holders) == 1, holders
            [holder] = holders
            active_pid = int(holder.rsplit(":", 1)[1])
            assert active_pid in (first.pid, second.pid)
            # One run of each job at a time, each finished before the next of the same job began.
            for job in ("webhook_delivery", "offline_check"):
                mine = [r for r in runs if r.job == job and r.finished_at is not None]
                assert mine, job
                for earlier, later in itertools.pairwise(mine):
                    assert earlier.finished_at <= later.started_at
            # The alert went out exactly once although two schedulers were up.
            assert len(receiver.requests) == 1

            active, standby = (first, second) if active_pid == first.pid else (second, first)
            active.send_signal(signal.SIGKILL)
            active.wait(10)
            killed_at = time.monotonic()
            assert _wait(lambda: any(r.holder.endswith(f":{standby.pid}") for r in _runs(session)), 60)
            took_over_in = time.monotonic() - killed_at
            assert took_over_in < 60
            print(f"\n[scheduler] standby took over {took_over_in:.1f} s after the active one was killed")
            assert standby.poll() is None
        finally:
            for proc in (first, second):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (first, second):
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    # The survivor stopped cleanly on SIGTERM.
    assert standby.returncode == 0, (tmp_path / "b.log").read_text()
    assert len(receiver.requests) == 1
