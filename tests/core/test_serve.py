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

from mdm.ground.models import JobRun
from tests.faults.harness import stop_process

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
    stop_process(proc, 60)


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


def _scep_get_of_a_4096_bit_request(port: int) -> str:
    """The request line certmonger sends for a 4096-bit key: PKIOperation as GET (measured: about
    5.6 KB with a 4096-bit CA, more than gunicorn's default 4,094 bytes)."""
    import base64
    from urllib.parse import quote

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.support.scep_client import PKCS_REQ, envelope_for, make_csr, pki_message, self_signed

    ca = x509.load_der_x509_certificate(
        httpx.get(f"http://127.0.0.1:{port}/scep?operation=GetCACert", timeout=10).content
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    csr = make_csr(key, "certmonger 4096-bit request for a field tablet", "not-a-live-challenge")
    message = pki_message(
        message_type=PKCS_REQ,
        content=envelope_for(csr.public_bytes(Encoding.DER), ca, "aes128_cbc"),
        signer_cert=self_signed(key, "SCEP SIGNER"),
        signer_key=key,
        transaction_id=base64.b64encode(os.urandom(20)).decode(),
        sender_nonce=os.urandom(16),
    )
    return f"/scep?operation=PKIOperation&message={quote(base64.b64encode(message).decode(), safe='')}"


def test_serve_accepts_a_scep_get_of_a_4096_bit_request(tmp_path):
    env = _env(tmp_path, HIKESHI_SCHEDULER_IN_SERVE="0", HIKESHI_PUSH_ENABLED="0")
    subprocess.run([str(BIN / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _free_port()
    server = _serve(env, port, tmp_path / "serve.log")
    try:
        _wait_for(lambda: _healthy(port), 60, "the server")
        target = _scep_get_of_a_4096_bit_request(port)
        assert len(f"GET {target} HTTP/1.1") > 5000
        response = httpx.get(f"http://127.0.0.1:{port}{target}", timeout=30)
        # Not 414: the message reached the SCEP endpoint, which answers with a CertRep.
        assert response.status_code == 200, response.text[:300]
        assert response.headers["Content-Type"] == "application/x-pki-message"
        # The limit is a setting: beyond it gunicorn still refuses, so it is really in force.
        too_long = httpx.get(f"http://127.0.0.1:{port}/scep?operation=GetCACaps&x={'a' * 9000}", timeout=30)
        assert too_long.status_code in (400, 414)
    finally:
        _stop(server)
    log = (tmp_path / "serve.log").read_text()
    assert "public URL http://127.0.0.1:8000 is plain http on loopback" in log


def test_serve_refuses_a_plain_http_public_url_with_one_line(tmp_path):
    env = _env(tmp_path, HIKESHI_PUBLIC_URL="http://mdm.example.jp")
    subprocess.run([str(BIN / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    result = subprocess.run(
        [str(BIN / "hikeshi"), "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "HIKESHI_PUBLIC_URL http://mdm.example.jp is plain http" in lines[0]
    assert "HIKESHI_DEV_INSECURE_HTTP=1" in lines[0]
