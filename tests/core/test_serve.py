"""The README start path, for real: `hikeshi db upgrade` then `hikeshi serve` in a fresh instance;
and the scheduler that `hikeshi serve` runs on a single machine: in a process of its own owned by
the gunicorn master, never in a web worker, waiting while another scheduler holds the lock."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from mdm.models import JobRun

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_")}
    env["HIKESHI_INSTANCE_PATH"] = str(tmp_path / "instance")
    env.update(extra)
    return env


def _wait_for(check: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _serve(env: dict[str, str], port: int, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "hikeshi"), "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_and_stop(env: dict[str, str], *args: str) -> str:
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "hikeshi"), "serve", "--port", str(port), "--threads", "4", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: _healthy(port), 60, "the server")
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=60)
    assert f"listening on http://127.0.0.1:{port}/" in output
    return output


def test_upgrade_then_serve_on_the_embedded_default(tmp_path):
    env = _env(tmp_path)
    subprocess.run([str(BIN / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    assert (tmp_path / "instance" / "hikeshi.db").exists()
    assert stat.S_IMODE((tmp_path / "instance" / "secret_key").stat().st_mode) == 0o600
    output = _start_and_stop(env)
    assert "scheduler: started as process" in output and "scheduler: stopping process" in output


def test_the_scheduler_in_serve_can_be_turned_off(tmp_path):
    env = _env(tmp_path, HIKESHI_SCHEDULER_IN_SERVE="0")
    subprocess.run([str(BIN / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    for output in (_start_and_stop(env), _start_and_stop(_env(tmp_path), "--no-scheduler")):
        assert "Scheduler: off" in output and "scheduler: started as process" not in output


def test_serve_runs_the_scheduler_outside_its_workers_and_waits_for_another(tmp_path):
    env = _env(
        tmp_path,
        HIKESHI_SCHEDULER_TICK_SECONDS="1",
        HIKESHI_SCHEDULER_LOCK_POLL="0.5",
        HIKESHI_PUSH_ENABLED="0",
    )
    subprocess.run([str(BIN / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    engine = create_engine(f"sqlite:///{tmp_path / 'instance' / 'hikeshi.db'}")

    def holders() -> set[int]:
        with Session(engine) as session:
            return {int(h.rsplit(":", 1)[1]) for h in session.scalars(select(JobRun.holder).distinct())}

    # A scheduler already running (`hikeshi scheduler` started by hand) holds the lock.
    with open(tmp_path / "scheduler.log", "wb") as out:
        first = subprocess.Popen(
            [str(BIN / "hikeshi"), "scheduler", "--job", "offline_check"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    port = _free_port()
    log = tmp_path / "serve.log"
    server = None
    try:
        _wait_for(lambda: first.pid in holders(), 60, "the first scheduler's job runs")
        server = _serve(env, port, log, "--workers", "2", "--threads", "2")
        _wait_for(lambda: _healthy(port), 60, "the server")
        found = _wait_for(
            lambda: re.search(r"scheduler: started as process (\d+) \(master (\d+)\)", log.read_text()),
            30,
            "the scheduler process",
        )
        scheduler_pid, master_pid = int(found.group(1)), int(found.group(2))  # type: ignore[union-attr]
        assert master_pid == server.pid
        _wait_for(lambda: "another scheduler is active; waiting" in log.read_text(), 30, "it to wait")
        assert holders() == {first.pid}
        # The first scheduler dies: the server's takes over.
        first.send_signal(signal.SIGKILL)
        first.wait()
        _wait_for(lambda: scheduler_pid in holders(), 60, "the server's scheduler to take over")
        assert holders() == {first.pid, scheduler_pid}
        # The server's scheduler process dies: the master starts another one.
        os.kill(scheduler_pid, signal.SIGKILL)
        restarted = _wait_for(
            lambda: re.search(
                rf"scheduler process {scheduler_pid} exited .*; started process (\d+)", log.read_text()
            ),
            60,
            "the master to restart its scheduler",
        )
        scheduler_pid = int(restarted.group(1))  # type: ignore[union-attr]
        _wait_for(lambda: scheduler_pid in holders(), 60, "the restarted scheduler's job runs")
        workers = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())}
        assert len(workers) >= 2
        assert len(holders()) == 3 and scheduler_pid in holders()
        assert not holders() & (workers | {server.pid})
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if server is not None:
            _stop(server)
        engine.dispose()
    # Stopping the server stops its scheduler.
    assert "scheduler: stopping process" in log.read_text()
    _wait_for(lambda: not _alive(scheduler_pid), 30, "the scheduler process to end")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
