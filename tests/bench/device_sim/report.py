"""One measured window (a workload at a worker count) and the lines the benchmarks print."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from tests.bench.device_sim.android import AgentRecord
from tests.bench.device_sim.fleet import DeviceRecord
from tests.bench.device_sim.load import LoadResult, run_load
from tests.bench.device_sim.measure import percentile, tree_cpu_seconds
from tests.bench.device_sim.postgres import StatementCounts
from tests.bench.device_sim.profile import WindowProfile, start_profile
from tests.bench.device_sim.stage import Stage

GOAL_CPU_MS = 2.0

HEADER = (
    f"{'workers':>7} {'workload':>15} {'requests':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'srv CPU ms':>9} {'PG CPU ms':>8} {'sim CPU':>8} {'SQL/req':>8} {'SQL/cyc':>8} {'all/cyc':>7} "
    f"{'errors':>6} {'load 1m':>7}"
)
LEGEND = [
    "  srv CPU / PG CPU / sim CPU: ms of CPU per request (server process tree / PostgreSQL / simulator)",
    "  SQL/req, SQL/cyc: pg_stat_statements calls of the server's role per request / per cycle without "
    "BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE; all/cyc with them",
    "  load 1m: the machine's one-minute load average at the end of the window (it is shared: "
    "requests/s and latency move with it, CPU per request and statements much less)",
]


@dataclass
class Measured:
    workers: int
    workload: str
    result: LoadResult
    cycles: int
    server_cpu: float
    database_cpu: float
    statements: StatementCounts
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu / self.result.requests * 1000

    @property
    def statements_per_cycle(self) -> float:
        return self.statements.work / self.cycles

    def line(self) -> str:
        r = self.result
        return (
            f"{self.workers:>7} {self.workload:>15} {r.requests:>8} {r.per_second:>8.1f} "
            f"{percentile(r.latencies, 0.5) * 1000:>7.1f} {percentile(r.latencies, 0.99) * 1000:>7.1f} "
            f"{self.cpu_ms_per_request:>9.2f} {self.database_cpu / r.requests * 1000:>8.2f} "
            f"{r.client_cpu_seconds / r.requests * 1000:>8.2f} {self.statements.work / r.requests:>8.2f} "
            f"{self.statements_per_cycle:>8.2f} {self.statements.total / self.cycles:>7.2f} "
            f"{len(r.errors):>6} {self.load_average:>7.2f}"
        )

    def against_goal(self, statements_goal: int) -> str:
        return (
            f"  {self.workers} worker(s), {self.workload:>15}: server CPU {self.cpu_ms_per_request:.2f} "
            f"ms/request (goal <= {GOAL_CPU_MS:.0f}); {self.statements_per_cycle:.2f} statements per cycle "
            f"({self.statements.total / self.cycles:.2f} with transaction control; "
            f"goal <= {statements_goal}); "
            f"{self.result.per_second:.0f} requests/s (load average {self.load_average:.1f})"
        )

    def top(self, n: int = 12) -> list[str]:
        return [
            f"    {calls / self.cycles:6.2f}  {' '.join(query.split())[:150]}"
            for calls, query in self.statements.top(n)
        ]


def measure_window(
    built: Stage,
    server: Any,
    records: list[DeviceRecord] | list[AgentRecord],
    workers: int,
    workload: str,
    *,
    rounds: int,
    processes: int,
    threads: int,
    command: bool,
) -> Measured:
    """Run `workload` and read server CPU, PostgreSQL CPU and statements just around it."""
    readings: dict[str, Any] = {}
    postmaster = built.cluster.postmaster_pid()
    profile = WindowProfile()

    def before() -> None:
        nonlocal profile
        profile = start_profile(server.proc.pid, workload, workers)
        readings["cpu"] = tree_cpu_seconds(server.proc.pid)
        readings["pg"] = tree_cpu_seconds(postmaster)
        readings["sql"] = built.cluster.statements()

    def after() -> None:
        readings["cpu"] = tree_cpu_seconds(server.proc.pid) - readings["cpu"]
        readings["pg"] = tree_cpu_seconds(postmaster) - readings["pg"]
        readings["sql"] = built.cluster.statements().minus(readings["sql"])
        profile.stop()

    result = run_load(
        server.url,
        records,
        workload,
        rounds=rounds,
        processes=processes,
        threads=threads,
        before=before,
        after=after,
    )
    assert not result.errors, result.errors[:5]
    cycles = len(result.acknowledged) if command else result.requests
    return Measured(workers, workload, result, cycles, readings["cpu"], readings["pg"], readings["sql"])


def merge(parts: list[Measured]) -> Measured:
    first = parts[0]
    calls: dict[str, int] = {}
    for part in parts:
        for query, n in part.statements.calls.items():
            calls[query] = calls.get(query, 0) + n
    return Measured(
        first.workers,
        first.workload,
        LoadResult(
            requests=sum(p.result.requests for p in parts),
            seconds=sum(p.result.seconds for p in parts),
            latencies=[t for p in parts for t in p.result.latencies],
            errors=[e for p in parts for e in p.result.errors],
            acknowledged=[u for p in parts for u in p.result.acknowledged],
            client_cpu_seconds=sum(p.result.client_cpu_seconds for p in parts),
        ),
        sum(p.cycles for p in parts),
        sum(p.server_cpu for p in parts),
        sum(p.database_cpu for p in parts),
        StatementCounts(calls),
        sum(p.load_average for p in parts) / len(parts),
    )
