"""The multi-process load runner: spawned simulator processes, threads in each, every thread with
its own keep-alive HTTP connection, each thread cycling its share of the devices.

Processes start, load their identities and then wait: the parent takes its "before" readings
(server CPU, statement counts) only when all are ready, releases them together, and takes its
"after" readings once all have reported. Only the cycles are inside the window.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import httpx

from tests.bench.device_sim.android import ANDROID_CYCLES, AgentRecord
from tests.bench.device_sim.cycles import CYCLES, CycleOutcome
from tests.bench.device_sim.fleet import DeviceRecord


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _simulator(
    base_url: str,
    records: list[DeviceRecord] | list[AgentRecord],
    workload: str,
    rounds: int,
    threads: int,
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    devices = [record.simulated() for record in records]
    cycle = {**CYCLES, **ANDROID_CYCLES}[workload]
    shares = [devices[i::threads] for i in range(threads)]
    outcomes = [CycleOutcome() for _ in shares]
    clients = [httpx.Client(base_url=base_url, timeout=120) for _ in shares]

    def run(share: list[Any], client: httpx.Client, outcome: CycleOutcome) -> None:
        for _ in range(rounds):
            for device in share:
                try:
                    cycle(device, client, outcome)
                except httpx.HTTPError as exc:
                    outcome.errors.append(f"{type(exc).__name__}: {exc}")

    workers = [
        threading.Thread(target=run, args=(share, client, outcome))
        for share, client, outcome in zip(shares, clients, outcomes, strict=True)
    ]
    ready.put(os.getpid())
    start.wait()
    cpu_before = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cpu = time.process_time() - cpu_before
    for client in clients:
        client.close()
    results.put(
        {
            "latencies": [t for o in outcomes for t in o.latencies],
            "errors": [e for o in outcomes for e in o.errors][:20],
            "acknowledged": [u for o in outcomes for u in o.acknowledged],
            "cpu": cpu,
        }
    )


def run_load(
    base_url: str,
    records: list[DeviceRecord] | list[AgentRecord],
    workload: str,
    *,
    rounds: int,
    processes: int,
    threads: int,
    before: Callable[[], None],
    after: Callable[[], None],
) -> LoadResult:
    context = get_context("spawn")
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    parts = [records[i::processes] for i in range(processes) if records[i::processes]]
    children = [
        context.Process(
            target=_simulator,
            args=(base_url, part, workload, rounds, threads, ready, start, results),
            daemon=True,
        )
        for part in parts
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=300)
        before()
        started = time.perf_counter()
        start.set()
        reports = []
        for _ in children:
            try:
                reports.append(results.get(timeout=3600))
            except queue.Empty as exc:
                raise AssertionError("a simulator process did not report within an hour") from exc
        seconds = time.perf_counter() - started
        after()
    finally:
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
    latencies = [t for r in reports for t in r["latencies"]]
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        latencies=latencies,
        errors=[e for r in reports for e in r["errors"]],
        acknowledged=[u for r in reports for u in r["acknowledged"]],
        client_cpu_seconds=sum(r["cpu"] for r in reports),
    )
