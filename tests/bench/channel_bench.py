"""What the two device-channel benchmarks share (bench_device_channel.py for Apple,
bench_android_sync.py for Android): the knobs, the command rounds and how the figures are judged."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from commands.queue import CommandRequest, enqueue_commands
from mdm.ground.models import Command, CommandStatus, Device
from tests.bench.device_sim.report import Measured, measure_window, merge
from tests.bench.device_sim.stage import ADMIN, Stage

WORKERS = [int(w) for w in os.environ.get("HIKESHI_BENCH_WORKERS", "1,2,4").split(",")]
ROUNDS = int(os.environ.get("HIKESHI_BENCH_ROUNDS", "2"))
COMMAND_ROUNDS = int(os.environ.get("HIKESHI_BENCH_COMMAND_ROUNDS", "1"))
PROCESSES = int(os.environ.get("HIKESHI_BENCH_CLIENT_PROCESSES", "2"))
THREADS = int(os.environ.get("HIKESHI_BENCH_CLIENT_THREADS", "8"))
# Issue 18: SQL statements per empty check-in and per command cycle.
GOAL_EMPTY_STATEMENTS = 3
GOAL_COMMAND_STATEMENTS = 8


def window(
    built: Stage,
    server: Any,
    records: Sequence[Any],
    workers: int,
    workload: str,
    rounds: int,
    *,
    command: bool,
) -> Measured:
    """One measured window of `rounds` cycles per device with the simulator's processes and threads."""
    return measure_window(
        built,
        server,
        list(records),
        workers,
        workload,
        rounds=rounds,
        processes=PROCESSES,
        threads=THREADS,
        command=command,
    )


def queue_device_information(built: Stage) -> list[str]:
    """A DeviceInformation for every device (REFRESH_INVENTORY on Android), no push; its uuids."""
    with built.factory() as session:
        commands = enqueue_commands(
            session,
            [CommandRequest(d, "DeviceInformation", None) for d in session.scalars(select(Device))],
            actor=ADMIN,
            push=False,
        )
        uuids = [c.uuid for c in commands]
        session.commit()
    return uuids


# The first command cycle after enrollment: the tablet's first inventory, whose answer is its first
# word on itself and queues one-off follow-ups (Activation Lock escrow on a supervised iPad).
# Reported apart from the steady cycles, and not judged against the goal.
FIRST_COMMAND = "first command"


def _acknowledged_round(built: Stage, window: Callable[[], Measured]) -> Measured:
    queued = queue_device_information(built)
    measured = window()
    assert sorted(measured.result.acknowledged) == sorted(queued)
    with built.factory() as session:
        statuses = set(session.scalars(select(Command.status).where(Command.uuid.in_(queued))))
    assert statuses == {CommandStatus.ACKNOWLEDGED}, statuses
    return measured


def first_command_round(built: Stage, window: Callable[[], Measured]) -> Measured:
    """One command cycle per device, the first since enrollment (FIRST_COMMAND), checked as the
    others; its follow-ups are answered within the window."""
    return replace(_acknowledged_round(built, window), workload=FIRST_COMMAND)


def command_rounds(built: Stage, window: Callable[[], Measured]) -> list[Measured]:
    """COMMAND_ROUNDS windows of one command cycle per device, merged (none when it is 0); each
    checks that every queued command was acknowledged, in the simulator's view and in the database."""
    parts = [_acknowledged_round(built, window) for _ in range(COMMAND_ROUNDS)]
    return [merge(parts)] if parts else []


def judged(rows: Sequence[Measured], empty_workload: str) -> list[str]:
    """Each row against the goal, then the statements of the first two rows by query."""
    judged_rows = [row for row in rows if row.workload != FIRST_COMMAND]
    lines = [
        row.against_goal(GOAL_EMPTY_STATEMENTS if row.workload == empty_workload else GOAL_COMMAND_STATEMENTS)
        for row in judged_rows
    ]
    for row in judged_rows[:2]:
        lines.append(
            f"  statements per {row.workload} cycle, {row.workers} worker(s), by query (calls / cycle):"
        )
        lines.extend(row.top(24))
    return lines


# The stack's floor (tests/bench/device_sim/floor.py), measured in the same run: its row's workload,
# and `hikeshi serve`'s default threads per worker (the benchmarks start it without --threads).
FLOOR = "floor"
FLOOR_THREADS = 16


def against_floor(rows: Sequence[Measured], floors: Sequence[Measured]) -> list[str]:
    """Each judged row's server CPU per request as a multiple of the floor's at its worker count."""
    lines = []
    for floor in floors:
        for row in rows:
            if row.workers == floor.workers and row.workload != FIRST_COMMAND:
                lines.append(
                    f"  {row.workers} worker(s), {row.workload:>15}: {row.cpu_ms_per_request:.2f} ms/request"
                    f" = {row.cpu_ms_per_request / floor.cpu_ms_per_request:.1f} x the floor "
                    f"({floor.cpu_ms_per_request:.2f} ms/request)"
                )
    return lines
