"""The README start path, for real: `hikeshi db upgrade` then `hikeshi serve` in a fresh instance."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_upgrade_then_serve_on_the_embedded_default(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_")}
    env["HIKESHI_INSTANCE_PATH"] = str(tmp_path / "instance")
    subprocess.run([str(bin_dir / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    assert (tmp_path / "instance" / "hikeshi.db").exists()
    assert stat.S_IMODE((tmp_path / "instance" / "secret_key").stat().st_mode) == 0o600
    port = _free_port()
    proc = subprocess.Popen(
        [str(bin_dir / "hikeshi"), "serve", "--port", str(port), "--threads", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert status == 200
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert f"listening on http://127.0.0.1:{port}/" in output
