"""SQL statements of an Android agent's `/android/v1/sync` (issue 18), counted with SQLAlchemy events
on the app's engine over real HTTP with signed requests: an empty sync (nothing to report, nothing
waiting), and a command cycle (sync → the queued DeviceInformation; sync with its result and the
inventory → nothing). Every cursor execution on the engine while the requests run is counted
(the server answers on its own thread), transaction control and the after-commit threads (audit
sealer, pushes, webhooks) excepted. Ceilings, not timing: a
change that adds statements to the sync fails here; the benchmark
(tests/bench/bench_android_sync.py) measures the same on PostgreSQL under load.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from commands.queue import enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
# Measured after issue 18's hot-path work: the identity with its device, the policy generation and
# the command that waits first (one statement), and its nonce. A sync whose device got its policy at
# the current generation and with the same device fields answers "unchanged" from the device's row
# (mdm.services.android_channel.policy_basis): no unit chain, profiles, OS update policy or app
# rules are read. A sync that reports nothing is not stored as a device message. A sync within a
# minute of the last one writes no "last seen" (mdm.services.devices.touch), so no outbox row asks
# readiness about it; expired nonces are purged by the scheduler, not by every sync. Was 15 (the
# device read apart, the nonce purge, last seen and its outbox row, one walk up the tree per
# setting), then 10 (the CA, the whole tree and every assignment read for the policy, the empty
# sync stored), then 7 (the policy's inputs and the queue read at every sync), then 2 (the nonce
# on its own). On PostgreSQL the identity read remembers the nonce itself (a data-modifying WITH):
# one statement. Goal: 3.
EMPTY_SYNC_CEILING = {"sqlite": 2, "postgresql": 1}
# The two syncs of a command cycle, with the inventory the refresh sends (SQLite also seals the
# audit chain inline). Compliance and readiness are asked of the outbox in one statement and done
# by the drain after the answer (mdm.ground.outbox_drain). Unchanged installed apps are not
# written; the facts are written once, and read with the identity when the body has an inventory.
# The queue is read in neither sync: the identity read said the command was the only one waiting.
# An app list like the last one is not read back (device_facts.applications_digest); the unit's
# location setting is the device's last policy's, that policy being current. Was 41 (52 while they
# ran before the commit), then 31, 26, 17, 15, 14, 13, then 12 on SQLite and 9 on PostgreSQL (whose
# identity reads now remember their nonces: 7). Goal: 8.
COMMAND_CYCLE_CEILING = {"sqlite": 12, "postgresql": 7}


@contextmanager
def _statements(engine: Any) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The after-commit machinery (the audit sealer, pushes, webhooks) has its own threads.
        if not _CONTROL.match(statement) and not threading.current_thread().name.startswith("hikeshi-"):
            seen.append(" ".join(statement.split())[:160])

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_an_empty_sync_and_a_command_cycle_stay_under_their_ceilings(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    hikeshi = enroll_app.extensions["hikeshi"]
    # As in a server: the outbox's drain runs on its own thread (not counted), not in the request.
    enroll_app.extensions["hikeshi.wiring"].drainer.background = True
    agent = agent_factory()
    agent.enroll(android_token())
    agent.sync()  # first inventory, and the first inventory command enrollment queued
    agent.sync()
    agent.sync()
    # Another tablet, with commands waiting: what the sync reads of the queue is its own device's.
    other = agent_factory(serial_number="R52TOTHER01")
    other.enroll(android_token())
    with transaction(hikeshi.session_factory) as s:
        for command in s.query(Command).filter(Command.status != CommandStatus.ACKNOWLEDGED):
            command.status = CommandStatus.CANCELLED  # leftovers of enrollment: not this test's
        for request_type in ("RestartDevice", "RestartDevice"):
            enqueue_command(s, s.get(Device, other.device_id), request_type, None, actor=ADMIN)

    with _statements(hikeshi.engine) as empty:
        answer = agent.sync(inventory=False)
    assert answer["commands"] == []

    with transaction(hikeshi.session_factory) as s:
        queued = enqueue_command(s, s.get(Device, agent.device_id), "DeviceInformation", None, actor=ADMIN)
        uuid = queued.uuid
    with _statements(hikeshi.engine) as cycle:
        first = agent.sync(inventory=False)
        assert [c["id"] for c in first["commands"]] == [uuid]
        second = agent.sync()
    assert second["commands"] == []
    with transaction(hikeshi.session_factory) as s:
        command = s.query(Command).filter(Command.uuid == uuid).one()
        assert command.status == CommandStatus.ACKNOWLEDGED

    print("\nempty sync:", len(empty), *empty, sep="\n  ")
    print("command cycle:", len(cycle), *cycle, sep="\n  ")
    database = hikeshi.engine.dialect.name
    assert len(empty) <= EMPTY_SYNC_CEILING[database], empty
    assert len(cycle) <= COMMAND_CYCLE_CEILING[database], cycle


def test_what_the_identity_read_found_waiting_never_hides_a_command(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    """The sync reads no queue when its identity read found nothing waiting, or only the command it
    hands over, or only the one it answers. Each shortcut next to what it must not miss."""
    hikeshi = enroll_app.extensions["hikeshi"]
    agent = agent_factory()
    agent.enroll(android_token())
    for _ in range(3):
        agent.sync()
    assert agent.sync(inventory=False)["commands"] == []

    def queue(*types: str) -> list[str]:
        with transaction(hikeshi.session_factory) as s:
            device = s.get(Device, agent.device_id)
            return [enqueue_command(s, device, t, None, actor=ADMIN).uuid for t in types]

    # Two waiting: both in one answer (the one found first is not all there is).
    first, second = queue("DeviceInformation", "RestartDevice")
    assert {c["id"] for c in agent.sync(inventory=False)["commands"]} == {first, second}
    # Their results, and nothing else waits: nothing more.
    assert agent.sync(inventory=False)["commands"] == []

    # One waiting, handed over; a second queued before the first is answered: the sync that
    # answers the first hands over the second.
    [third] = queue("RestartDevice")
    assert [c["id"] for c in agent.sync(inventory=False)["commands"]] == [third]
    [fourth] = queue("RestartDevice")  # same priority: the answered one still comes first
    assert [c["id"] for c in agent.sync(inventory=False)["commands"]] == [fourth]
    assert agent.sync(inventory=False)["commands"] == []
    with transaction(hikeshi.session_factory) as s:
        states = {
            c.uuid: c.status
            for c in s.query(Command).filter(Command.uuid.in_([first, second, third, fourth]))
        }
    assert set(states.values()) == {CommandStatus.ACKNOWLEDGED}, states
