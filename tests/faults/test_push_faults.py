"""Faults that used to lose pushes (issue 16, defect 1), against a real `hikeshi serve`: a web
worker killed, and a `kill -HUP` reload, while APNs is down. The wake-ups are rows of the outbox,
so when APNs returns every queued command is pushed, fetched and acknowledged exactly once."""

from __future__ import annotations

import plistlib

import httpx
import pytest
from sqlalchemy import select

from mdm.ground.models import Command, CommandStatus, Device, OutboxEntry
from tests.faults.harness import Fleet, enrolled_fleet, running_server, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(settings, device_ca, apns_server) -> Fleet:  # type: ignore[no-untyped-def]
    return enrolled_fleet(settings, device_ca, apns_server, 6)


def _outbox_rows(factory) -> list[OutboxEntry]:  # type: ignore[no-untyped-def]
    with factory() as s:
        return list(s.scalars(select(OutboxEntry).order_by(OutboxEntry.subject_id)))


def _device_ids(factory, ipads) -> list[int]:  # type: ignore[no-untyped-def]
    with factory() as s:
        by_udid = {d.udid: d.id for d in s.scalars(select(Device))}
    return [by_udid[i.udid] for i in ipads]


def _queue_locks(server, token: str, device_ids: list[int]) -> list[str]:  # type: ignore[no-untyped-def]
    uuids = []
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for device_id in device_ids:
            answer = http.post(f"/api/v1/devices/{device_id}/commands", json={"request_type": "DeviceLock"})
            assert answer.status_code == 201, answer.text
            uuids.append(answer.json()["uuid"])
    return uuids


def _tried_and_failed(factory, device_ids: list[int]) -> bool:  # type: ignore[no-untyped-def]
    rows = {r.subject_id: r for r in _outbox_rows(factory)}
    return all(i in rows and rows[i].attempts >= 1 for i in device_ids)


def test_worker_kill_and_reload_during_an_apns_outage_lose_no_push(
    fleet, apns_server, session_factory, tmp_path
):  # type: ignore[no-untyped-def]
    conf, ipads, token = fleet.conf, fleet.ipads, fleet.token
    ids = _device_ids(session_factory, ipads)
    apns_server.set_outage(503)
    with running_server(conf, session_factory, tmp_path, "--workers", "2", "--threads", "4") as server:
        first = _queue_locks(server, token, ids[:3])
        # The worker tried APNs, got 503s, and wrote the retry into the database.
        wait_for(lambda: _tried_and_failed(session_factory, ids[:3]), 60, "the first failed attempts")
        killed = server.kill_workers()
        assert killed, server.output()
        wait_for(lambda: server.healthy() and not (server.workers() & killed), 60, "replacement workers")

        second = _queue_locks(server, token, ids[3:])
        wait_for(lambda: _tried_and_failed(session_factory, ids[3:]), 60, "the second failed attempts")
        server.reload()
        wait_for(server.healthy, 60, "the server after the reload")
        assert all(p.status == 503 for p in apns_server.pushes), "nothing may be delivered during the outage"

        apns_server.set_outage(None)
        tokens = {i.token_hex for i in ipads}
        wait_for(
            lambda: tokens <= {p.token for p in apns_server.pushes if p.status == 200},
            90,
            "a delivered push for every device",
        )
        wait_for(lambda: _outbox_rows(session_factory) == [], 30, "an empty outbox")
        with session_factory() as s:
            locks = {
                c.uuid: c for c in s.scalars(select(Command).where(Command.request_type == "DeviceLock"))
            }
        assert set(locks) == set(first + second)
        assert all(c.pushed_at is not None for c in locks.values())

        # Health is what was committed: APNs reported up again within seconds.
        def apns_up() -> bool:
            check = httpx.get(f"{server.url}/readyz", timeout=5).json()["checks"]["apns"]
            return check["ok"] and check.get("state") == "up"

        wait_for(apns_up, 15, "/readyz to report APNs up")

        # Every device, woken, fetches its lock over real HTTP and acknowledges it once.
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for ipad in ipads:
                fetched = plistlib.loads(ipad.connect(http, ipad.idle_body()).content)
                assert fetched["Command"]["RequestType"] == "DeviceLock"
                assert ipad.connect(http, ipad.result_body(fetched["CommandUUID"])).status_code == 200
        with session_factory() as s:
            done = list(s.scalars(select(Command).where(Command.request_type == "DeviceLock")))
        assert {c.status for c in done} == {CommandStatus.ACKNOWLEDGED}
        assert [c.delivery_count for c in done] == [1] * len(ipads)
