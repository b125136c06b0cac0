"""A check-in storm while APNs recovers (issue 16, defect 2), against a real `hikeshi serve` on
the test database: threads of devices fetch and acknowledge commands over real HTTP while the
server records the results of the recovering pushes for the same devices. No deadlock loses a
push record, and health follows what was committed: APNs is reported up within seconds, and no
device keeps a stale push error."""

from __future__ import annotations

import plistlib
import threading
import time

import httpx
import pytest
from sqlalchemy import select

from mdm.ground.models import Command, CommandStatus, Device, PushAttempt
from tests.faults.harness import enrolled_fleet, running_server, wait_for

pytestmark = pytest.mark.slow
DEVICES = 30
STORM_THREADS = 6


def test_checkin_storm_during_apns_recovery(settings, device_ca, apns_server, session_factory, tmp_path):  # type: ignore[no-untyped-def]
    fleet = enrolled_fleet(settings, device_ca, apns_server, DEVICES, prefix="storm")
    conf, ipads, token = fleet.conf, fleet.ipads, fleet.token
    with session_factory() as s:
        ids = {d.udid: d.id for d in s.scalars(select(Device))}

    apns_server.set_outage(503)
    with running_server(conf, session_factory, tmp_path, "--workers", "2", "--threads", "8") as server:
        auth = {"Authorization": f"Bearer {token}"}
        queued: list[str] = []
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
            for ipad in ipads:
                for request_type in ("SecurityInfo", "ProfileList"):
                    answer = http.post(
                        f"/api/v1/devices/{ids[ipad.udid]}/commands", json={"request_type": request_type}
                    )
                    assert answer.status_code == 201, answer.text
                    queued.append(answer.json()["uuid"])

        def apns_state() -> str | None:
            return httpx.get(f"{server.url}/readyz", timeout=10).json()["checks"]["apns"].get("state")

        wait_for(lambda: apns_state() == "down", 60, "/readyz to report APNs down")

        stop = threading.Event()
        failures: list[str] = []
        answered = [0]

        def storm(share: list) -> None:  # type: ignore[type-arg]
            with httpx.Client(base_url=server.url, timeout=30) as http:
                while not stop.is_set():
                    for ipad in share:
                        response = ipad.connect(http, ipad.idle_body())
                        while response.status_code == 200 and response.content:
                            uuid = plistlib.loads(response.content)["CommandUUID"]
                            response = ipad.connect(http, ipad.result_body(uuid))
                        if response.status_code != 200:
                            failures.append(f"{response.status_code} {response.text[:200]}")
                        answered[0] += 1

        threads = [
            threading.Thread(target=storm, args=(ipads[n::STORM_THREADS],), daemon=True)
            for n in range(STORM_THREADS)
        ]
        for thread in threads:
            thread.start()
        # The storm is on; now APNs comes back, and the pushes waiting in the outbox go out.
        wait_for(lambda: answered[0] >= DEVICES, 60, "the storm to get going")
        apns_server.set_outage(None)
        recovered_at = time.monotonic()
        tokens = {i.token_hex for i in ipads}
        wait_for(lambda: tokens <= {p.token for p in apns_server.pushes if p.status == 200}, 90, "every push")
        wait_for(lambda: apns_state() == "up", 30, "/readyz to report APNs up")
        up_after = time.monotonic() - recovered_at
        stop.set()
        for thread in threads:
            thread.join(60)
        log = server.output()

    assert failures == []
    assert "deadlock detected" not in log, log
    with session_factory() as s:
        devices = list(s.scalars(select(Device)))
        assert [d.udid for d in devices if d.push_error is not None] == []
        delivered = {
            a.device_id for a in s.scalars(select(PushAttempt).where(PushAttempt.status_code == 200))
        }
        assert delivered == {d.id for d in devices}  # the record of every delivered push was kept
        # The commands the API queued (the scheduler's inventory refresh may add its own meanwhile).
        commands = list(s.scalars(select(Command).where(Command.uuid.in_(queued))))
        assert {c.status for c in commands} == {CommandStatus.ACKNOWLEDGED}
        assert len(commands) == 2 * DEVICES
    print(f"APNs reported up {up_after:.1f} s after it answered again")
