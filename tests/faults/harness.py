"""A real `hikeshi serve` (gunicorn master, web workers, the scheduler process) on the test
database, the APNs test server, enrolled simulated iPads, and a private PostgreSQL server that can
be stopped and started: what the fault tests and the fault soak (tests/bench) break."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from commands.queue import cancel_command, pending_commands
from mdm import create_app
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Device, OutboxEntry, SchedulerLease
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from tests.support.apple_device import SimulatedIPad
from web.auth.tokens import create_api_token

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
        stop_process(proc, 60)


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask a process to stop (SIGTERM: a server drains its requests), kill it after `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
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


def pushing_settings(settings: Settings, device_ca: Any, apns_server: Any) -> Settings:
    """The test settings, pointed at the test device CA and the APNs test server."""
    return replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )


@contextmanager
def push_enabled_app(settings: Settings, device_ca: Any, apns_server: Any) -> Iterator[Any]:
    """An app that pushes to the APNs test server, whose client certificate is imported as an
    administrator would import it; `app.topic` is that certificate's topic. Its push dispatcher
    and engine are closed on leaving. What every fault test and the fault soak start from."""
    creds = apns_server.issue_client_credentials()
    conf = pushing_settings(settings, device_ca, apns_server)
    app = create_app(conf)
    ext = app.extensions["hikeshi"]
    try:
        with transaction(ext.session_factory) as s:
            import_push_certificate(
                s,
                read_push_certificate(creds.cert_pem + creds.key_pem),
                secret_key=conf.secret_key,
                actor=ADMIN,
            )
        app.topic = creds.topic
        yield app
    finally:
        ext.dispatcher.close()
        ext.engine.dispose()


def service_token(factory: Any, name: str) -> str:
    """An admin API token of a service account, valid for a day: what the load goes through."""
    with transaction(factory) as s:
        _row, token = create_api_token(
            s,
            name=name,
            role="admin",
            org_unit_id=None,
            expires_at=clock.now() + timedelta(days=1),
            actor=SYSTEM,
            service_account="fault-suite",
        )
    return token


@dataclass
class Fleet:
    """Settings for a server that pushes to the APNs test server, its enrolled iPads (first
    wake-ups delivered, outbox empty), and an admin API token."""

    conf: Settings
    ipads: list[SimulatedIPad]
    token: str


def enrolled_fleet(
    settings: Settings, device_ca: Any, apns_server: Any, count: int, prefix: str = "ipad"
) -> Fleet:
    """Enroll `count` iPads through an in-process app, which then leaves the stage: the faults
    are for the `hikeshi serve` the test starts next on the same database."""
    with push_enabled_app(settings, device_ca, apns_server) as app:
        ext = app.extensions["hikeshi"]
        token = service_token(ext.session_factory, f"{prefix}-faults")
        ipads = enroll_ipads(app, device_ca, app.topic, count, prefix=prefix)

        def outbox_empty() -> bool:
            with ext.session_factory() as s:
                return s.scalars(select(OutboxEntry).limit(1)).first() is None

        wait_for(outbox_empty, 60, "enrollment wake-ups")
        assert ext.dispatcher.wait_idle(60)
        return Fleet(ext.settings, ipads, token)


# A PostgreSQL server of the test's own, so a test can restart it without disturbing the shared
# server other runs use. initdb refuses to run as root: as root, the tools run as `postgres`.
PG_BIN = Path(os.environ.get("HIKESHI_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _postgres_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def private_postgres_missing() -> str | None:
    """Why this machine cannot run a private PostgreSQL server, or None when it can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"no {PG_BIN / tool} (set HIKESHI_TEST_PG_BIN to PostgreSQL's bin folder)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser, and initdb refuses root"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user, and initdb refuses root"
    return None


@dataclass
class PrivatePostgres:
    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            [*_postgres_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "120", *args],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[-1]} failed: {done.stdout}{done.stderr}\n{self.output()}")

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        self._pg_ctl("-l", str(self.folder / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: `fast` disconnects every client and shuts down cleanly, `immediate` is a crash."""
        self._pg_ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart`: stopped as `stop` does, started at once; returns once it accepts
        connections again (an operator's restart, with no time spent down on purpose)."""
        self._pg_ctl("-m", mode, "-l", str(self.folder / "server.log"), "restart")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def output(self) -> str:
        try:
            return (self.folder / "server.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only, trusting
    local connections (it lives as long as the test and holds test data only)."""
    missing = private_postgres_missing()
    if missing:
        raise RuntimeError(missing)
    folder = Path(tempfile.mkdtemp(prefix="hikeshi-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(folder, free_port())
    try:
        subprocess.run(
            [
                *_postgres_user(),
                str(PG_BIN / "initdb"),
                "-D",
                str(server.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {server.port}\n"
                f"unix_socket_directories = '{folder}'\n"
                # Three server processes with a pool each, the test's own engines: room for all.
                "max_connections = 200\nshared_buffers = 32MB\n"
            )
        server.start()
        try:
            yield server
        finally:
            with suppress(RuntimeError):  # already stopped by the test, or never came back
                server.stop("fast")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
