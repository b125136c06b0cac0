"""Benchmark (issue 18): pushes per second from one Hikeshi process to the APNs test server.

Not part of the default test run. Run it explicitly (SQLite, then PostgreSQL):

    .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_apns_push_rate.py -m bench -s -q
    HIKESHI_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/pytest -p no:cacheprovider -o python_files=bench_*.py \\
        tests/bench/bench_apns_push_rate.py -m bench -s -q

HIKESHI_BENCH_PUSHES [3000] enrolled iPads, one push each: `dispatcher.push_now(ids)` of the app
(the real PushDispatcher and APNs client: HTTP/2 over TLS with the imported push certificate), timed
from the call to the APNs stand-in receiving the last push. The stand-in (tests/support/apns_server,
a real HTTP/2 TLS server) runs in a spawned process of its own, so its work does not share this
process's interpreter lock. Reported: pushes/s, the CPU time of this process per push, and how many
HTTP/2 connections and concurrent streams the stand-in saw (is one connection the limit?).
Goal (issue 18): >= 2,000 pushes/s.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import replace
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

import pytest

from mdm import create_app
from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.db import transaction
from mdm.ground.models import Device, EnrollmentState
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from mdm.services import orgunits

pytestmark = pytest.mark.bench

PUSHES = int(os.environ.get("HIKESHI_BENCH_PUSHES", "3000"))
WARMUP = 20
GOAL_PER_SECOND = 2000


def _stand_in(pipe: Connection) -> None:
    """In a spawned process: the APNs test server, answering the parent's questions over `pipe`."""
    from tests.support.apns_server import start_apns_server

    with tempfile.TemporaryDirectory(prefix="hikeshi-apns-") as tmp:
        server = start_apns_server(tmp)
        creds = server.issue_client_credentials()
        pipe.send((server.url, str(server.ca_file), creds.cert_pem, creds.key_pem, creds.topic))
        while True:
            request = pipe.recv()
            if request[0] == "wait":
                pushes = server.wait_for_pushes(request[1], timeout=request[2])
                pipe.send(
                    (
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


def _ask(pipe: Connection, *request: Any) -> Any:
    pipe.send(request)
    return pipe.recv()


def _devices(factory: Any, topic: str, count: int) -> list[int]:
    with transaction(factory) as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=SYSTEM)
        now = clock.now()
        devices = [
            Device(
                udid=str(uuid.uuid4()).upper(),
                serial_number=f"PSH{n:09d}",
                platform="apple",
                is_supervised=True,
                enrollment_state=EnrollmentState.ENROLLED,
                push_token=uuid.uuid4().hex * 2,
                push_magic=str(uuid.uuid4()).upper(),
                topic=topic,
                org_unit_id=hq.id,
                created_at=now,
                enrolled_at=now,
            )
            for n in range(count)
        ]
        s.add_all(devices)
        s.flush()
        return [d.id for d in devices]


def _database_env() -> str:
    url = os.environ.get("HIKESHI_TEST_DATABASE_URL")
    return f"HIKESHI_TEST_DATABASE_URL={url} " if url else ""


def test_pushes_per_second(settings: Any) -> None:
    context = get_context("spawn")
    ours, theirs = context.Pipe()
    stand_in = context.Process(target=_stand_in, args=(theirs,), daemon=True)
    stand_in.start()
    url, ca_file, cert_pem, key_pem, topic = ours.recv()
    conf = replace(settings, apns_url=url, apns_ca_file=ca_file)
    app = create_app(conf)
    hikeshi = app.extensions["hikeshi"]
    try:
        with transaction(hikeshi.session_factory) as s:
            import_push_certificate(
                s, read_push_certificate(cert_pem + key_pem), secret_key=conf.secret_key, actor=SYSTEM
            )
        ids = _devices(hikeshi.session_factory, topic, WARMUP + PUSHES)
        # Warm-up: TLS handshake, the push certificate loaded, the loop started.
        assert all(o.status == 200 for o in hikeshi.dispatcher.push_now(ids[:WARMUP], timeout=60))
        _ask(ours, "wait", WARMUP, 60)
        _ask(ours, "clear")

        cpu_before = time.process_time()
        stand_in_before = _ask(ours, "cpu")
        started = time.monotonic()
        outcomes = hikeshi.dispatcher.push_now(ids[WARMUP:], timeout=600)
        returned = time.monotonic()
        cpu = time.process_time() - cpu_before
        received, last_at, connections, peak_streams, tokens = _ask(ours, "wait", PUSHES, 600)
        stand_in_cpu = _ask(ours, "cpu") - stand_in_before
        assert hikeshi.dispatcher.wait_idle(60)
    finally:
        hikeshi.dispatcher.close()
        hikeshi.engine.dispose()
        _ask(ours, "stop")
        stand_in.join(30)

    assert received == PUSHES and tokens == PUSHES
    assert sorted(o.status for o in outcomes) == [200] * PUSHES
    seconds = last_at - started
    rate = PUSHES / seconds
    print(
        "\n".join(
            [
                "",
                f"APNs pushes from one process, {PUSHES} devices, database {hikeshi.engine.dialect.name}, "
                f"{os.cpu_count()} CPUs (shared)",
                f"  push_now -> last push received: {seconds:.2f} s = {rate:.0f} pushes/s "
                f"(goal >= {GOAL_PER_SECOND}/s: {'met' if rate >= GOAL_PER_SECOND else 'not met'})",
                f"  push_now returned after {returned - started:.2f} s; CPU of this process "
                f"{cpu / PUSHES * 1000:.2f} ms per push (dispatch, database, TLS, HTTP/2)",
                f"  the stand-in saw {connections} HTTP/2 connection(s) in all (warm-up included), at most "
                f"{peak_streams} streams in flight at once (it answers each stream as it ends); its own CPU "
                f"{stand_in_cpu / PUSHES * 1000:.2f} ms per push",
                "Reproduce:",
                f"  HIKESHI_BENCH_PUSHES={PUSHES} {_database_env()}.venv/bin/pytest -p no:cacheprovider "
                "-o python_files=bench_*.py tests/bench/bench_apns_push_rate.py -m bench -s -q",
            ]
        )
    )
