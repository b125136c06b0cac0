"""More than one node (issue 18): two real `hikeshi serve` processes on the test PostgreSQL
database, Debian's haproxy in front, the APNs test server, enrolled iPads and the reference
Android agent.

- A hotline lock issued on node A reaches the Android agent long-polling on node B within 1 s,
  and the readiness change of the incident reaches an SSE subscriber on node B within 1 s
  (PostgreSQL NOTIFY: no in-process-only signal can do that).
- Every command gets exactly one push, although both nodes push and both run a scheduler.
- Scheduler jobs run once: one scheduler at a time, no run of a job overlapping another.
- Node A SIGKILLed (master, web workers and scheduler) in the middle of a load of commands sent
  through haproxy: every command the API acknowledged is delivered through node B, and every
  push A had not sent yet is sent by B.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import plistlib
import queue
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from enrollment import tokens
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import AgentRequestNonce, Command, CommandStatus, Device, JobRun, OutboxEntry
from mdm.services import orgunits
from tests.faults.harness import ServerProcess, enrolled_fleet, running_server, wait_for
from tests.nodes.haproxy import haproxy_missing, running_haproxy
from tests.support.android_agent import ReferenceAgent
from tests.support.tools import skip_or_fail

pytestmark = pytest.mark.slow

IPADS = 6
ROUNDS = 5  # lock measurements (the first is the hotline lock; then more commands)
BUDGET_SECONDS = 1.0
LOAD_COMMANDS = 60
LOADERS = 3
ADMIN = Actor("admin@hq.example.jp", "admin", "192.0.2.10")
INVENTORY = ("SecurityInfo", "ProfileList", "DeviceInformation", "InstalledApplicationList")


@pytest.fixture
def nodes_possible(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip(
            "several nodes share one PostgreSQL server; SQLite is one file on one machine and "
            "cannot be multi-node (set HIKESHI_TEST_DATABASE_URL)"
        )
    missing = haproxy_missing()
    if missing:
        skip_or_fail(missing)  # CI installs haproxy (.ci/run): there its absence fails


def _unit_and_android_token(factory: Any) -> tuple[int, str]:
    with transaction(factory) as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "県消防本部", "code": "NHQ"}, actor=ADMIN)
        station = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "東署", "code": "NST", "parent_id": hq.id}, actor=ADMIN
        )
        unit = orgunits.create_unit(
            s,
            {
                "kind": "unit",
                "name_ja": "東救急隊",
                "code": "NA1",
                "unit_type": "ambulance",
                "parent_id": station.id,
            },
            actor=ADMIN,
        )
        created = tokens.create_token(
            s,
            {"org_unit_id": unit.id, "max_uses": 1, "platform": "android", "expires_in": timedelta(days=1)},
            actor=ADMIN,
        )
        return unit.id, created.secret


class SseReader:
    """An SSE subscriber of /api/v1/readiness/stream on one node, in a thread of its own."""

    def __init__(self, url: str, token: str) -> None:
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
            timeout=httpx.Timeout(10, read=30),
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._stream()
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise  # closed by the test: the end of the stream; otherwise a failure

    def _stream(self) -> None:
        with self._client.stream("GET", "/api/v1/readiness/stream?lifetime=300") as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(": hikeshi readiness stream"):
                    self.connected.set()
                elif line.startswith("data: "):
                    self.events.put((time.monotonic(), json.loads(line[len("data: ") :])))

    def next_for_unit(
        self, unit_id: int, seconds: float, required: int | None = None
    ) -> tuple[float, dict[str, Any]]:
        """The next event of `unit_id` (with `required` working tablets, when given)."""
        deadline = time.monotonic() + seconds
        while True:
            arrived, event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if event["unit"]["id"] == unit_id and required in (None, event["required"]):
                return arrived, event

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def _kill_node(node: ServerProcess) -> set[int]:
    """The machine of node A dies: its master, web workers and scheduler, all at once."""
    victims = {node.proc.pid, *node.children()}
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    node.proc.wait(10)
    return victims


def _drain_ipad(ipad: Any, http: httpx.Client) -> list[str]:
    """One device session: Idle, then acknowledge every command until the server has none."""
    received = []
    response = ipad.connect(http, ipad.idle_body())
    while response.status_code == 200 and response.content:
        uuid = plistlib.loads(response.content)["CommandUUID"]
        received.append(uuid)
        response = ipad.connect(http, ipad.result_body(uuid))
    assert response.status_code == 200, response.text
    return received


def _scalar(factory: Any, statement: Any) -> Any:
    with factory() as s:
        return s.scalar(statement)


def _command_to_parked_agent(agent: ReferenceAgent, factory: Any, issue: Any) -> float:
    """Park the agent's long poll (on the node its client points at), then `issue()` a command on
    another node: seconds from sending that request to the long poll answering "pending"."""
    # Every signed agent request records its nonce in the transaction the wait commits before it
    # holds (last_seen_at is written at most once a minute, so it cannot tell).
    last_nonce = select(func.max(AgentRequestNonce.id))
    nonce_before = _scalar(factory, last_nonce)
    woke: dict[str, Any] = {}

    def long_poll() -> None:
        woke["pending"] = agent.wait(timeout=30)
        woke["at"] = time.monotonic()

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()

    def parked() -> bool:
        # The wait commits the agent's nonce, then holds no connection: parked.
        nonce = _scalar(factory, last_nonce)
        return nonce is not None and (nonce_before is None or nonce > nonce_before)

    wait_for(parked, 20, "the agent's long poll to be held", every=0.02)
    sent = time.monotonic()
    answer = issue()
    assert answer.status_code in (200, 201), answer.text
    poller.join(40)
    assert woke.get("pending") is True, woke
    return float(woke["at"] - sent)


def _holder_pid(holder: str) -> int:
    return int(holder.rsplit(":", 1)[1])


def test_two_nodes_behind_haproxy(  # type: ignore[no-untyped-def]
    nodes_possible, settings, device_ca, apns_server, session_factory, tmp_path: Path
):
    fleet = enrolled_fleet(settings, device_ca, apns_server, IPADS, prefix="node")
    conf, ipads, token = fleet.conf, fleet.ipads, fleet.token
    unit_id, android_secret = _unit_and_android_token(session_factory)
    with session_factory() as s:
        ipad_ids = {d.udid: d.id for d in s.scalars(select(Device).where(Device.platform != "android"))}
    auth = {"Authorization": f"Bearer {token}"}
    apns_server.clear_pushes()
    latencies: dict[str, list[float]] = {"lock_a_to_agent_b": [], "readiness_a_to_sse_b": []}

    with (
        running_server(conf, session_factory, tmp_path, "--workers", "2", "--threads", "8") as node_a,
        running_server(conf, session_factory, tmp_path, "--workers", "2", "--threads", "8") as node_b,
        running_haproxy(tmp_path, [("a", node_a.port), ("b", node_b.port)]) as balancer,
    ):
        api_a = httpx.Client(base_url=node_a.url, headers=auth, timeout=30)
        api_lb = httpx.Client(base_url=balancer.url, headers=auth, timeout=30)
        agent = ReferenceAgent(balancer.url, serial_number="R52TNODE001")
        agent.enroll(android_secret)  # through haproxy, on whichever node
        agent.sync()
        agent.http.close()
        agent.http = httpx.Client(base_url=node_b.url, timeout=90)  # the agent's long poll lands on B
        sse = SseReader(node_b.url, token)
        try:
            assert sse.connected.wait(30), "the SSE stream on node B never started"

            # -- a readiness change on A reaches the SSE subscriber on B ------------------------
            sent = time.monotonic()
            opened = api_a.post(
                "/api/v1/incidents",
                json={"device_id": agent.device_id, "caller_name": "山田 太郎", "kind": "lost"},
            )
            assert opened.status_code == 201, opened.text
            arrived, event = sse.next_for_unit(unit_id, 10)
            latencies["readiness_a_to_sse_b"].append(arrived - sent)
            print(f"\nnodes: readiness change on A -> SSE event on B: {arrived - sent:.3f} s")
            assert "lost" in json.dumps(event, ensure_ascii=False), event
            incident_id = opened.json()["id"]
            agent.sync()  # whatever opening the incident queued, fetched and answered

            # More readiness changes on A: the unit's plan asks for more tablets each time.
            plan_path = f"/api/v1/org-units/{unit_id}/continuity-plan"
            plan = api_a.get(plan_path).json()
            kept = ("max_seen_minutes", "min_battery_percent", "require_compliant", "ignored_rules")
            for required in range(plan["required_working"] + 1, plan["required_working"] + ROUNDS):
                sent = time.monotonic()
                answer = api_a.put(
                    plan_path, json={**{k: plan[k] for k in kept}, "required_working": required}
                )
                assert answer.status_code == 200, answer.text
                arrived, event = sse.next_for_unit(unit_id, 10, required=required)
                latencies["readiness_a_to_sse_b"].append(arrived - sent)
                print(f"\nnodes: readiness change on A -> SSE event on B: {arrived - sent:.3f} s")

            # -- commands issued on A reach the agent long-polling on B -------------------------
            for round_number in range(ROUNDS):
                if round_number == 0:
                    path, body = f"/api/v1/incidents/{incident_id}/lock", {}
                else:
                    path = f"/api/v1/devices/{agent.device_id}/commands"
                    body = {"request_type": "DeviceInformation"}
                seconds = _command_to_parked_agent(
                    agent, session_factory, functools.partial(api_a.post, path, json=body)
                )
                latencies["lock_a_to_agent_b"].append(seconds)
                print(f"\nnodes: command on A -> agent long-polling on B: {seconds:.3f} s")
                synced = agent.sync()
                if round_number == 0:
                    assert agent.tablet.locked, synced
                agent.sync()  # results reported

            # -- pushes: one per command, although both nodes push and drain the outbox ---------
            def outbox_empty() -> bool:
                return _scalar(session_factory, select(func.count()).select_from(OutboxEntry)) == 0

            def drains() -> int:
                return _scalar(session_factory, select(func.count()).where(JobRun.job == "push_outbox"))

            wait_for(outbox_empty, 60, "the pushes of the start-up (inventory refresh) sent")
            apns_server.clear_pushes()
            since = clock.now()
            queued_once = {}
            api_b = httpx.Client(base_url=node_b.url, headers=auth, timeout=30)
            for n, ipad in enumerate(ipads):
                node = api_a if n % 2 == 0 else api_b
                answer = node.post(
                    f"/api/v1/devices/{ipad_ids[ipad.udid]}/commands", json={"request_type": "SecurityInfo"}
                )
                assert answer.status_code == 201, answer.text
                queued_once[ipad.udid] = answer.json()["uuid"]
            api_b.close()
            wait_for(outbox_empty, 60, "every push of the commands sent")
            # Both schedulers' drains go on; a few more drains must not push anything again.
            before = drains()
            wait_for(lambda: drains() >= before + 3, 30, "three more outbox drains")
            with session_factory() as s:
                # The commands each push can be for: queued since, or the one an earlier identical
                # request already held (queueing an inventory query twice returns the first).
                commands_for: dict[int, set[str]] = {}
                for device_id, uuid in s.execute(
                    select(Command.device_id, Command.uuid).where(
                        (Command.queued_at >= since) | Command.uuid.in_(queued_once.values())
                    )
                ):
                    commands_for.setdefault(device_id, set()).add(uuid)
            queued = {device_id: len(uuids) for device_id, uuids in commands_for.items()}
            for ipad in ipads:
                pushes = len(apns_server.pushes_to(ipad.token_hex))
                # One push per wake-up request: never more than the commands queued (requests
                # made together share one push), never none.
                assert 1 <= pushes <= queued[ipad_ids[ipad.udid]], (ipad.udid, pushes, queued)
            with httpx.Client(base_url=balancer.url, timeout=30) as http:
                for ipad in ipads:
                    assert queued_once[ipad.udid] in _drain_ipad(ipad, http)

            # -- node A killed in the middle of a load sent through haproxy ---------------------
            acknowledged: dict[str, set[str]] = {ipad.udid: set() for ipad in ipads}
            answered = [0]
            failures: list[str] = []
            lock = threading.Lock()

            def load(share: list[int]) -> None:
                """Commands through haproxy, each retried until the API acknowledges it, as a
                client would when a node drops its request."""
                with httpx.Client(base_url=balancer.url, headers=auth, timeout=30) as http:
                    for n in share:
                        ipad = ipads[n % len(ipads)]
                        body = {"request_type": INVENTORY[(n // len(ipads)) % len(INVENTORY)]}
                        for _attempt in range(20):
                            try:
                                answer = http.post(
                                    f"/api/v1/devices/{ipad_ids[ipad.udid]}/commands", json=body
                                )
                            except httpx.TransportError as exc:
                                failures.append(f"transport: {exc}")
                                continue
                            if answer.status_code in (200, 201):
                                with lock:
                                    acknowledged[ipad.udid].add(answer.json()["uuid"])
                                    answered[0] += 1
                                break
                            failures.append(f"{answer.status_code}: {answer.text[:200]}")

            apns_server.clear_pushes()
            loaders = [
                threading.Thread(target=load, args=(list(range(k, LOAD_COMMANDS, LOADERS)),), daemon=True)
                for k in range(LOADERS)
            ]
            for loader in loaders:
                loader.start()
            wait_for(lambda: answered[0] >= LOAD_COMMANDS // 3, 120, "a third of the load", every=0.01)
            killed_at = clock.now()
            a_pids = _kill_node(node_a)  # requests of the other loaders are in flight on A now
            for loader in loaders:
                loader.join(300)
                assert not loader.is_alive()
            assert answered[0] == LOAD_COMMANDS, failures
            print(f"\nnodes: load of {LOAD_COMMANDS} commands; after the kill a client retried: {failures}")

            wait_for(outbox_empty, 60, "node B to send the pushes node A left behind")
            pushed = {record.token for record in apns_server.pushes}
            # From here node B's scheduler may queue an inventory refresh (these iPads answer
            # without QueryResponses, so they stay due): that is new work, not the load's.
            drain_from = clock.now()
            with httpx.Client(base_url=balancer.url, timeout=30) as http:
                for ipad in ipads:
                    if acknowledged[ipad.udid]:
                        assert ipad.token_hex in pushed, f"{ipad.udid} never pushed after node A died"
                    received = _drain_ipad(ipad, http)
                    missing = acknowledged[ipad.udid] - set(received)
                    assert not missing, f"{ipad.udid}: acknowledged commands never delivered: {missing}"
            with session_factory() as s:
                left = s.execute(
                    select(Command.device_id, Command.request_type, Command.status, Command.queued_at).where(
                        Command.status.in_(CommandStatus.PENDING),
                        Command.device_id.in_(ipad_ids.values()),
                        Command.queued_at < drain_from,
                    )
                ).all()
            assert left == [], f"commands still waiting after every iPad checked in through node B: {left}"

            # -- scheduler jobs ran once -------------------------------------------------------
            wait_for(lambda: node_b.scheduler_pid() not in a_pids, 30, "node B's scheduler to take over")
            with session_factory() as s:
                runs = list(s.scalars(select(JobRun).order_by(JobRun.started_at, JobRun.id)))
            holders = [run.holder for run in runs]
            switches = [i for i in range(1, len(holders)) if holders[i] != holders[i - 1]]
            assert len(switches) <= 1, f"schedulers took turns: {sorted(set(holders))}"
            if switches:
                first, then = holders[0], holders[switches[0]]
                assert _holder_pid(first) in a_pids and _holder_pid(then) not in a_pids
                assert runs[switches[0]].started_at >= killed_at
            by_job: dict[str, list[JobRun]] = {}
            for run in runs:
                by_job.setdefault(run.job, []).append(run)
            for job, job_runs in by_job.items():
                for earlier, later in itertools.pairwise(job_runs):
                    if earlier.finished_at is None:
                        # Only a run cut short by the SIGKILL of node A may be left unfinished.
                        assert _holder_pid(earlier.holder) in a_pids, (job, earlier.holder)
                        continue
                    assert later.started_at >= earlier.finished_at, f"{job} ran twice at once"
        finally:
            sse.close()
            api_a.close()
            api_lb.close()
            agent.http.close()

    print(
        "\nnodes: "
        + "; ".join(
            f"{name} max {max(values):.3f} s, mean {sum(values) / len(values):.3f} s over {len(values)}"
            for name, values in latencies.items()
        )
    )
    for name, values in latencies.items():
        assert max(values) <= BUDGET_SECONDS, f"{name}: {values}"
