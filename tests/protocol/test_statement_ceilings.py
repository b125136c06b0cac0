"""SQL statements of the Apple device channel's hot path (issue 18), counted with SQLAlchemy events
over the real Flask app and signed requests: an empty check-in (Idle → empty answer) and a command
cycle (Idle → DeviceInformation, Acknowledged with its answers → empty answer).

Counted: every cursor execution on the app's engine made by the request's own thread (BEGIN and
COMMIT are not cursor executions). What the commit hooks do after the answer (the outbox drain of
inventory settlement and readiness, the audit sealer) runs on other threads and is measured by
the benchmark (tests/bench/bench_device_channel.py), not here. Counts are not timing: a change
that adds a statement to the hot path fails here, in CI.
"""

from __future__ import annotations

import plistlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from commands.queue import cancel_command, enqueue_command
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import Command, CommandStatus, Device, DeviceCompliance, OutboxEntry, OutboxTopic
from tests.bench.device_sim.cycles import query_responses

_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
# Issue 18's goal is 3. One: the identity read carries the command waiting for the device
# (commands.delivery.waiting_command), and nothing waits. Was 2 (the queue read apart).
EMPTY_CHECKIN_CEILING = 1
# Issue 18's goal for a command cycle is 8. Idle → DeviceInformation: the identity read (with the
# waiting command), the claim (one guarded UPDATE). Acknowledged → nothing: the identity read
# (with the next command and the facts the answer merges into), the settlement with the result as
# received and its audit event (one guarded UPDATE in a WITH that inserts both; SQLite: UPDATE ...
# RETURNING, then the two INSERTs), the facts, and the outbox row that asks for compliance and
# readiness (done by the drain after the answer, mdm.ground.outbox_drain). SQLite reads the audit
# chain's head too: it seals events inline.
# Was 12 on PostgreSQL and 13 on SQLite (the identity and the queue, the answered command and the
# facts each read apart from their update), then 8 on PostgreSQL (the result inserted apart), then
# 7 (the audit event inserted apart).
POSTGRES_COMMAND_CYCLE_CEILING = 6
SQLITE_COMMAND_CYCLE_CEILING = 9


@contextmanager
def _noted(app: Any, keep: Callable[[str, Any], str | None]) -> Iterator[list[str]]:
    """What `keep` makes of each statement this thread sends to the database while the block runs
    (None: not kept)."""
    engine = app.extensions["hikeshi"].engine
    seen: list[str] = []
    me = threading.get_ident()

    def note(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        kept = keep(statement, context) if threading.get_ident() == me else None
        if kept is not None:
            seen.append(kept)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _short(statement: str) -> str:
    return " ".join(statement.split())[:160]


def _statements(app: Any, *, whole: bool = False) -> Any:
    """The statements this thread sends (`whole`: as sent, else shortened for a message), but
    transaction control, which is not work (SQLite's driver sends BEGIN as a statement)."""
    return _noted(app, lambda s, _c: None if _CONTROL.match(s) else s if whole else _short(s))


def _expanding(app: Any) -> Any:
    """The statements this thread sends whose IN lists are expanding parameters: SQLAlchemy renders
    such a statement again at every execution (CPU on every request, issue 18)."""

    def expanding(statement: str, context: Any) -> str | None:
        compiled = getattr(context, "compiled", None)
        return _short(statement) if compiled is not None and compiled.post_compile_params else None

    return _noted(app, expanding)


def _enrolled(client: Any, ipad: Any, session: Session) -> Device:
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    session.rollback()
    for command in session.scalars(select(Command).where(Command.status == CommandStatus.QUEUED)):
        cancel_command(session, command, actor=ADMIN)  # the first inventory enrollment queued
    session.commit()
    device = session.scalars(select(Device)).one()
    session.rollback()
    return device


def test_empty_checkin_and_command_cycle_stay_under_their_ceilings(
    app: Any, client: Any, ipad: Any, session: Session
) -> None:
    device = _enrolled(client, ipad, session)
    # Warm: the first check-in after enrollment may record that the tablet was seen.
    assert ipad.connect(client, ipad.idle_body()).data == b""
    # As in a server: the outbox's drain runs on its own thread after the commit, not in the request.
    drainer = app.extensions["hikeshi.wiring"].drainer
    drainer.background = True

    with _statements(app) as empty, _statements(app, whole=True) as empty_full, _expanding(app) as expanded:
        response = ipad.connect(client, ipad.idle_body())
    assert response.status_code == 200 and response.data == b""

    def queue_inventory() -> Command:
        assert drainer.wait_idle(30)  # the test's session writes only once the drain is done (SQLite)
        session.rollback()  # a fresh snapshot to write from (SQLite)
        device_now = session.get(Device, device.id)
        queued = enqueue_command(session, device_now, "DeviceInformation", None, actor=ADMIN)
        session.commit()
        return queued

    def inventory_cycle(queued: Command) -> Any:
        response = ipad.connect(client, ipad.idle_body())
        assert response.status_code == 200
        message = plistlib.loads(response.data)
        assert message["CommandUUID"] == queued.uuid
        answer = ipad.result_body(
            queued.uuid,
            "Acknowledged",
            QueryResponses=query_responses(ipad, message["Command"].get("Queries")),
        )
        return ipad.connect(client, answer)

    # The first inventory is the tablet's first word on itself: learning it is supervised queues
    # one-off follow-ups (Activation Lock escrow), answered here. They are not the steady cycle.
    response = inventory_cycle(queue_inventory())
    while response.data:
        follow_up = plistlib.loads(response.data)["CommandUUID"]
        response = ipad.connect(client, ipad.result_body(follow_up, "Acknowledged"))
    queued = queue_inventory()
    with _statements(app) as cycle, _expanding(app) as expanded_in_cycle:
        response = inventory_cycle(queued)
    assert response.status_code == 200 and response.data == b""

    session.rollback()
    session.expire_all()
    assert session.get(Command, queued.id).status == CommandStatus.ACKNOWLEDGED  # type: ignore[union-attr]
    # What the commit asked for is done right after it, by the drain: compliance evaluated again.
    assert drainer.wait_idle(30)
    session.rollback()
    compliance = session.get(DeviceCompliance, device.id)
    acknowledged = session.get(Command, queued.id)
    assert compliance is not None and acknowledged is not None and acknowledged.acknowledged_at is not None
    assert compliance.evaluated_at >= acknowledged.acknowledged_at
    left = session.scalars(select(OutboxEntry.topic).where(OutboxEntry.topic != OutboxTopic.WAKE_DEVICE))
    assert left.all() == []  # (the wake-up waits for a push certificate this test has none of)
    print("\nempty check-in:", len(empty), *empty, sep="\n  ")
    print("command cycle:", len(cycle), *cycle, sep="\n  ")
    assert len(empty) <= EMPTY_CHECKIN_CEILING, empty
    # Each column read back costs CPU on every request: the identity read carries what the
    # certificate's checks and a command's claim and rendering read, not whole rows.
    [identity_read] = empty_full
    assert "device_certificates.pem" not in identity_read and "waiting_command.queued_at" not in identity_read
    postgres = app.extensions["hikeshi"].engine.dialect.name == "postgresql"
    ceiling = POSTGRES_COMMAND_CYCLE_CEILING if postgres else SQLITE_COMMAND_CYCLE_CEILING
    assert len(cycle) <= ceiling, cycle
    assert expanded == [] and expanded_in_cycle == [], expanded + expanded_in_cycle


def test_a_check_in_of_a_tablet_seen_lately_writes_when_it_was_seen_and_asks_the_drain_nothing(
    app: Any, client: Any, ipad: Any, session: Session
) -> None:
    """Past the minute of resolution the check-in records the time; within the minutes below which
    readiness does not look (MIN_SEEN_MINUTES), only a swapped-in spare's check-in can change a
    unit (tests/continuity/test_spare_arrival.py), and this tablet is none."""
    device = _enrolled(client, ipad, session)
    assert ipad.connect(client, ipad.idle_body()).data == b""
    later = clock.now() + timedelta(minutes=2)
    clock.set_clock(lambda: later)
    try:
        with _statements(app) as seen:
            assert ipad.connect(client, ipad.idle_body()).status_code == 200
    finally:
        clock.set_clock(None)
    session.rollback()
    assert session.get(Device, device.id).last_seen_at == later  # type: ignore[union-attr]
    assert [s for s in seen if s.startswith("UPDATE devices SET last_seen_at")], seen
    assert not [s for s in seen if "outbox" in s], seen
