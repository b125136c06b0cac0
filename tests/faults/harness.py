"""A real `hikeshi serve` (gunicorn master, web workers, the scheduler process) on the test
database, the APNs test server, and enrolled simulated iPads: what the fault tests break."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from commands.queue import cancel_command, pending_commands
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Device, SchedulerLease
from tests.support.apple_device import SimulatedIPad

BIN = Path(sys.executable).parent
ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], T], seconds: float, what: str, every: float = 0.1) -> T:
    """Poll `check` until it returns something true; no fixed sleeps in the tests."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(every)


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_")}
    env.update(
        HIKESHI_INSTANCE_PATH=str(settings.instance_path),
        HIKESHI_DATABASE_URL=settings.database_url,
        HIKESHI_SECRET_KEY=settings.secret_key,
        HIKESHI_PUBLIC_URL=settings.public_url,
        HIKESHI_APNS_URL=settings.apns_url,
        HIKESHI_APNS_CA_FILE=str(settings.apns_ca_file or ""),
        HIKESHI_DEVICE_CA_FILE=str(settings.device_ca_file or ""),
        # Seconds, not minutes: the scheduler ticks (and drains the push outbox) every second.
        HIKESHI_SCHEDULER_TICK_SECONDS="1",
        HIKESHI_SCHEDULER_LOCK_POLL="1",
        HIKESHI_APNS_TIMEOUT="3",
    )
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    factory: Any
    killed: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def children(self) -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    found.add(int(entry.name))
        return found

    def scheduler_pid(self) -> int | None:
        with self.factory() as session:
            lease = session.get(SchedulerLease, "scheduler")
            return None if lease is None else int(lease.holder.rsplit(":", 1)[1])

    def workers(self) -> set[int]:
        return self.children() - {self.scheduler_pid() or -1}

    def kill_workers(self) -> set[int]:
        """SIGKILL every web worker (the scheduler process is left alone); gunicorn forks new ones."""
        victims = self.workers()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        self.killed.extend(victims)
        return victims

    def reload(self) -> None:
        """`kill -HUP` the master: a graceful reload, new workers, old ones stop."""
        os.kill(self.proc.pid, signal.SIGHUP)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@contextmanager
def running_server(
    settings: Settings, factory: Any, tmp_path: Path, *args: str, **env: str
) -> Iterator[ServerProcess]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "hikeshi"), "serve", "--port", str(port), *args],
            env=server_env(settings, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, port, log, factory)
    try:
        wait_for(lambda: server.healthy() or proc.poll() is not None, 60, "the server")
        assert proc.poll() is None, server.output()
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def enroll_ipads(
    app: Any, device_ca: Any, topic: str, count: int, prefix: str = "ipad"
) -> list[SimulatedIPad]:
    """Enrolled iPads (Authenticate + TokenUpdate over the app's door), first inventory cancelled."""
    client = app.test_client()
    ipads = []
    for n in range(count):
        cert, key = device_ca.issue_identity(f"{prefix}-{n}")
        ipad = SimulatedIPad(cert, key, topic=topic)
        assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
        assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
        ipads.append(ipad)
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        for device in s.scalars(select(Device)):
            for command in pending_commands(s, device):
                cancel_command(s, command, actor=ADMIN)
    return ipads
