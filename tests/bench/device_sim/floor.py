"""The stack's floor: the least a device request can cost on this stack, measured beside Hikeshi in
the same run, so its server CPU per request reads as a ratio the machine's drift does not move.

A Flask app under gunicorn with the worker class, workers and threads `hikeshi serve` uses and an
access log, on the benchmark's database as the server's own role. For every request it does what
no device request can skip, and nothing more: read the body, decode it, read the device's row (all
its columns) in one SQLAlchemy Core transaction, answer. An Apple check-in (PUT /mdm/connect or
/mdm/checkin, a plist) names its device by UDID and gets an empty 200; an Android sync (POST
/android/v1/sync, JSON) by its certificate's fingerprint (joined to the device) and gets what an
empty sync gets, no commands. No signature check, no ORM, no write, no audit: what Hikeshi spends
above the floor is its own work (issue 18's goal is 2 ms of server CPU per request in all).

    gunicorn -k gthread tests.bench.device_sim.floor:app   (FLOOR_DATABASE_URL: the database)
"""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from flask import Flask, Response, request
from sqlalchemy import bindparam, create_engine, select

from mdm.ground.models import Device, DeviceCertificate
from tests.faults.harness import free_port, stop_process, wait_for

app = Flask(__name__)
_engine = create_engine(os.environ["FLOOR_DATABASE_URL"]) if "FLOOR_DATABASE_URL" in os.environ else None
_DEVICES = Device.__table__
_DEVICE_BY_UDID = select(_DEVICES).where(_DEVICES.c.udid == bindparam("udid"))
_CERTIFICATES = DeviceCertificate.__table__
_DEVICE_BY_FINGERPRINT = (
    select(_DEVICES)
    .join(_CERTIFICATES, _CERTIFICATES.c.device_id == _DEVICES.c.id)
    .where(_CERTIFICATES.c.fingerprint_sha256 == bindparam("fingerprint"))
)
_ROOT = Path(__file__).resolve().parents[3]


@app.get("/health")
def health() -> Response:
    return Response(b"ok", 200)


@app.put("/mdm/connect")
@app.put("/mdm/checkin")
def check_in() -> Response:
    message = plistlib.loads(request.get_data())
    assert _engine is not None
    with _engine.begin() as conn:
        row = conn.execute(_DEVICE_BY_UDID, {"udid": message["UDID"]}).first()
    return Response(b"", 200 if row is not None else 404)


@app.post("/android/v1/sync")
def sync() -> Response:
    json.loads(request.get_data())
    assert _engine is not None
    with _engine.begin() as conn:
        fingerprint = request.headers["Hikeshi-Certificate"]
        row = conn.execute(_DEVICE_BY_FINGERPRINT, {"fingerprint": fingerprint}).first()
    if row is None:
        return Response(b"", 404)
    answer = {"commands": [], "poll_interval_seconds": 900}
    return Response(json.dumps(answer), 200, content_type="application/json")


@dataclass
class FloorServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running_floor(database_url: str, workers: int, threads: int, log: Path) -> Iterator[FloorServer]:
    """The floor app under gunicorn, as `hikeshi serve --workers` runs Hikeshi (gthread, plain HTTP
    on loopback, an access log line per request)."""
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [
        str(gunicorn),
        "--chdir",
        str(_ROOT),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--access-logfile",
        "-",
        "tests.bench.device_sim.floor:app",
    ]
    env = {**os.environ, "FLOOR_DATABASE_URL": database_url}
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = FloorServer(proc, port)
    try:
        wait_for(lambda: _healthy(server) or proc.poll() is not None, 60, "the floor server")
        assert proc.poll() is None, log.read_text()
        yield server
    finally:
        stop_process(proc, 30)


def _healthy(server: FloorServer) -> bool:
    try:
        return httpx.get(f"{server.url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
