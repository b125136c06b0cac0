"""The active scheduler reports itself alive, so /readyz can tell a stopped one from a running one."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from mdm.ground.models import ServiceHealth
from mdm.roots.scheduler.runner import holder_name, run_scheduler


def test_active_scheduler_heartbeat_reaches_readyz(settings, client, session):
    before = client.get("/readyz").get_json()["checks"]["scheduler"]
    assert before == {"ok": True, "state": "no report yet"}
    stop = threading.Event()
    fast = replace(settings, scheduler_lock_poll_seconds=0.2)
    runner = threading.Thread(target=run_scheduler, args=(fast, stop), kwargs={"jobs": ["offline_check"]})
    runner.start()
    try:
        row = None
        deadline = time.monotonic() + 30
        while row is None and time.monotonic() < deadline:
            session.rollback()
            session.expire_all()
            row = session.get(ServiceHealth, "scheduler")
            time.sleep(0.1)
        assert row is not None, "the active scheduler never reported"
        assert row.healthy and row.detail == f"active: {holder_name()}"
        check = client.get("/readyz").get_json()["checks"]["scheduler"]
        assert check["ok"] is True and check["state"] == "up"
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
