"""The benchmark's device simulator (tests/bench/device_sim) is a faithful client, checked small
in the normal suite: iPads it enrolls (over profile + SCEP, and through the issuance service the
SCEP door calls) are accepted on their signed Authenticate and TokenUpdate, an empty check-in gets
an empty answer, and a command cycle really acknowledges the DeviceInformation in the database
with the answers recorded. The SQL statements per request are counted with SQLAlchemy events on
the app's engine (no BEGIN/COMMIT: they are not cursor executions) and recorded, not asserted:
the benchmark (tests/bench/bench_device_channel.py) measures them on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from commands.queue import CommandRequest, enqueue_commands
from mdm.ground.models import Command, CommandStatus, Device, DeviceCertificate, EnrollmentTokenUse
from mdm.ground.x509util import fingerprint
from tests.bench.device_sim.cycles import CycleOutcome, command_cycle, empty_checkin
from tests.bench.device_sim.fleet import enroll_over_scep, enroll_through_issuance, first_checkins
from tests.bench.device_sim.stage import ADMIN, cancel_pending


@contextmanager
def _counting(engine: Any) -> Iterator[list[int]]:
    counted = [0]

    def count(*_: Any) -> None:
        counted[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counted
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_simulated_fleet_is_accepted_and_acknowledges(
    enroll_app: Any,
    enroll_settings: Any,
    live_server: Any,
    session: Session,
    tree: Any,
    push_topic: str,
    make_token: Any,
    record_property: Any,
) -> None:
    created = make_token(tree.ambulance, uses=3)
    factory = enroll_app.extensions["hikeshi"].session_factory
    over_scep, _ = enroll_over_scep(live_server.url, created.secret, push_topic, 1)
    issued, _ = enroll_through_issuance(
        factory, enroll_settings.database_url, enroll_settings, [created.token.id], push_topic, 2, processes=1
    )
    fleet = over_scep + issued
    first_checkins(live_server.url, fleet, processes=1)
    assert cancel_pending(factory) > 0  # enrollment queued the first inventory

    session.rollback()
    devices = {d.udid: d for d in session.scalars(select(Device))}
    assert set(devices) == {record.udid for record in fleet}
    uses = session.scalars(select(EnrollmentTokenUse).where(EnrollmentTokenUse.token_id == created.token.id))
    assert len(list(uses)) == 3
    for record in fleet:
        ipad = record.ipad()
        bound = session.scalars(
            select(DeviceCertificate).where(
                DeviceCertificate.fingerprint_sha256 == fingerprint(ipad.identity_cert)
            )
        ).one()
        assert bound.device_id == devices[record.udid].id

    engine = enroll_app.extensions["hikeshi"].engine
    ipads = [record.ipad() for record in fleet]
    outcome = CycleOutcome()
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        with _counting(engine) as empty_statements:
            for ipad in ipads:
                empty_checkin(ipad, http, outcome)
        assert not outcome.errors, outcome.errors

        with factory() as s:
            queued = [
                c.uuid
                for c in enqueue_commands(
                    s,
                    [CommandRequest(d, "DeviceInformation", None) for d in s.scalars(select(Device))],
                    actor=ADMIN,
                    push=False,
                )
            ]
            s.commit()
        with _counting(engine) as command_statements:
            for ipad in ipads:
                command_cycle(ipad, http, outcome)
    assert not outcome.errors, outcome.errors
    assert sorted(outcome.acknowledged) == sorted(queued)
    assert outcome.latencies and len(outcome.latencies) == len(ipads) * 3

    session.rollback()
    session.expire_all()
    commands = list(session.scalars(select(Command).where(Command.uuid.in_(queued))))
    assert {c.status for c in commands} == {CommandStatus.ACKNOWLEDGED}
    # The answers were read: supervision is known only from DeviceInformation (IsSupervised).
    assert {device.is_supervised for device in session.scalars(select(Device))} == {True}

    per_empty = empty_statements[0] / len(ipads)
    per_cycle = command_statements[0] / len(ipads)
    record_property("statements_per_empty_checkin", per_empty)
    record_property("statements_per_command_cycle", per_cycle)
    print(
        f"\n{engine.dialect.name}: {per_empty:.1f} statements per empty check-in, "
        f"{per_cycle:.1f} per command cycle (SQLAlchemy cursor executions, no BEGIN/COMMIT)"
    )
