"""What the push benchmarks share (bench_apns_push_rate.py, bench_profile_assignment.py): the APNs
stand-in (tests/support/apns_server, a real HTTP/2 TLS server) in a spawned process of its own, so
its work does not share the measured process's interpreter lock or CPU time; an app that pushes to
it with the imported push certificate; and enrolled iPads seeded in one insert."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from mdm import create_app
from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.db import transaction
from mdm.ground.models import Device, EnrollmentState
from mdm.ground.push.apns import PushCredentials
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate


@dataclass(frozen=True)
class Received:
    """What the stand-in saw by the time it had `count` pushes."""

    count: int
    last_at: float  # time.monotonic() of the last push (the same clock in every process here)
    connections: int  # HTTP/2 connections accepted in all
    peak_streams: int  # the most pushes unanswered at once, over all connections
    tokens: int  # distinct device tokens


def _serve(pipe: Connection, options: dict[str, Any]) -> None:
    """In the spawned process: the stand-in, answering the parent's requests over `pipe`."""
    from tests.support.apns_server import start_apns_server

    with tempfile.TemporaryDirectory(prefix="hikeshi-apns-") as tmp:
        server = start_apns_server(tmp, **options)
        creds = server.issue_client_credentials()
        pipe.send((server.url, str(server.ca_file), creds.cert_pem, creds.key_pem, creds.topic))
        while True:
            request = pipe.recv()
            if request[0] == "wait":
                pushes = server.wait_for_pushes(request[1], timeout=request[2])
                pipe.send(
                    Received(
                        len(pushes),
                        pushes[-1].received_monotonic,
                        server.connection_count,
                        server.peak_streams_in_flight,
                        len({p.token for p in pushes}),
                    )
                )
            elif request[0] == "cpu":
                pipe.send(time.process_time())
            elif request[0] == "clear":
                server.clear_pushes()
                pipe.send(True)
            else:
                server.stop()
                pipe.send(True)
                return


class StandIn:
    """The out-of-process APNs stand-in; `options` go to tests.support.apns_server.ApnsTestServer."""

    def __init__(self, **options: Any) -> None:
        context = get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs, options), daemon=True)
        self._process.start()
        self.url, self.ca_file, cert_pem, key_pem, topic = self._pipe.recv()
        self.credentials = PushCredentials(topic=topic, cert_pem=cert_pem, key_pem=key_pem)

    def _ask(self, *request: Any) -> Any:
        self._pipe.send(request)
        return self._pipe.recv()

    def wait(self, count: int, timeout: float = 600) -> Received:
        return self._ask("wait", count, timeout)

    def cpu(self) -> float:
        """The stand-in process's CPU time so far (seconds)."""
        return self._ask("cpu")

    def clear(self) -> None:
        self._ask("clear")

    def stop(self) -> None:
        self._ask("stop")
        self._process.join(30)


@contextmanager
def pushing_app(settings: Any, **overrides: Any) -> Iterator[tuple[Any, StandIn]]:
    """A stand-in, and an app (settings with `overrides`) that pushes to it with its certificate."""
    stand_in = StandIn()
    conf = replace(settings, apns_url=stand_in.url, apns_ca_file=stand_in.ca_file, **overrides)
    app = create_app(conf)
    hikeshi = app.extensions["hikeshi"]
    try:
        with transaction(hikeshi.session_factory) as s:
            pem = stand_in.credentials.cert_pem + stand_in.credentials.key_pem
            import_push_certificate(s, read_push_certificate(pem), secret_key=conf.secret_key, actor=SYSTEM)
        yield app, stand_in
    finally:
        hikeshi.dispatcher.close()
        hikeshi.engine.dispose()
        stand_in.stop()


def seed_ipads(factory: Any, topic: str, count: int, org_unit_id: int, serial_prefix: str) -> list[int]:
    """`count` enrolled, supervised iPads with push tokens, in the unit; their ids in order."""
    now = clock.now()
    with transaction(factory) as s:
        devices = [
            Device(
                udid=str(uuid.uuid4()).upper(),
                serial_number=f"{serial_prefix}{n:09d}",
                platform="apple",
                is_supervised=True,
                enrollment_state=EnrollmentState.ENROLLED,
                push_token=uuid.uuid4().hex * 2,
                push_magic=str(uuid.uuid4()).upper(),
                topic=topic,
                org_unit_id=org_unit_id,
                created_at=now,
                enrolled_at=now,
            )
            for n in range(count)
        ]
        s.add_all(devices)
        s.flush()
        return [d.id for d in devices]
