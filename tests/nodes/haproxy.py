"""Debian's haproxy in front of several `hikeshi serve` nodes, as a prefecture would run them:
round robin, health-checked on /healthz, long polls and SSE streams held open. The configuration
is written to the test's temporary folder; haproxy runs in the foreground as the test's child."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.faults.harness import free_port, stop_process, wait_for

CONFIG = """\
global
    maxconn 1024

defaults
    mode http
    timeout connect 2s
    # Above the Android long poll (55 s by default) and the SSE heartbeat (5 s).
    timeout client 120s
    timeout server 120s
    # A node that refuses the connection (killed): try the request on another one.
    retries 3
    option redispatch
    option httplog

frontend fleet
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}
"""


def haproxy_missing() -> str | None:
    if shutil.which("haproxy") is None:
        return "haproxy is not installed (Debian: apt-get install haproxy; .ci/run installs it)"
    return None


@dataclass
class LoadBalancer:
    proc: subprocess.Popen[bytes]
    port: int
    config: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def running_haproxy(tmp_path: Path, backends: Sequence[tuple[str, int]]) -> Iterator[LoadBalancer]:
    """haproxy on a free loopback port in front of (name, port) nodes; yields once it answers."""
    port = free_port()
    servers = "\n".join(f"    server {name} 127.0.0.1:{node_port} check" for name, node_port in backends)
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, servers=servers))
    check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    log = tmp_path / "haproxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    balancer = LoadBalancer(proc, port, config, log)
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"haproxy exited: {balancer.output()}")
            try:
                return httpx.get(f"{balancer.url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, 30, "haproxy to forward /healthz")
        yield balancer
    finally:
        stop_process(proc, 10)
