"""A private PostgreSQL 15 cluster for one benchmark run, with pg_stat_statements loaded.

The shared test server does not preload pg_stat_statements, and a statement count read there would
include every other helper's tests. This cluster is the benchmark's alone: `initdb` in a temporary
directory (run as the `postgres` OS user when we are root, since initdb refuses root), listening on
a free loopback port, trust authentication on loopback only, torn down at the end.

The server under test connects as role `hikeshi`, the benchmark's own set-up and checks as the
superuser `postgres`: statements are counted for the `hikeshi` role in the benchmark database only,
so nothing the benchmark itself runs is counted.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.faults.harness import free_port

PG_BIN = Path(os.environ.get("HIKESHI_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_ROLE = "hikeshi"
DATABASE = "bench"
# Transaction control, counted apart: the "statements" are the ones doing work.
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION")


@dataclass(frozen=True)
class StatementCounts:
    """pg_stat_statements `calls` of the server's role, by normalised query text."""

    calls: dict[str, int]

    def minus(self, before: StatementCounts) -> StatementCounts:
        diff = {q: n - before.calls.get(q, 0) for q, n in self.calls.items()}
        return StatementCounts({q: n for q, n in diff.items() if n > 0})

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def transaction_control(self) -> int:
        return sum(n for q, n in self.calls.items() if q.lstrip().upper().startswith(TRANSACTION_CONTROL))

    @property
    def work(self) -> int:
        return self.total - self.transaction_control

    def top(self, n: int = 12) -> list[tuple[int, str]]:
        return sorted(((c, q) for q, c in self.calls.items()), reverse=True)[:n]


@dataclass
class PrivateCluster:
    data_dir: Path
    port: int
    run_as: str | None

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={DATABASE}"

    @property
    def server_url(self) -> str:
        """What `hikeshi serve` is given: the benchmark database as role hikeshi."""
        return f"postgresql+psycopg://{SERVER_ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def statements(self) -> StatementCounts:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT s.query, sum(s.calls)::bigint FROM pg_stat_statements s"
                " JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid"
                " WHERE r.rolname = %s AND d.datname = %s GROUP BY s.query",
                (SERVER_ROLE, DATABASE),
            ).fetchall()
        return StatementCounts({query: int(calls) for query, calls in rows})


def _as_postgres(run_as: str | None, *command: str) -> list[str]:
    return ["runuser", "-u", run_as, "--", *command] if run_as else list(command)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    run_as = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="hikeshi-bench-pg-"))
    data = base / "data"
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    port = free_port()
    log = base / "postgres.log"
    try:
        subprocess.run(
            _as_postgres(
                run_as,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{base}'",
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track": "top",
            "pg_stat_statements.max": "10000",
            "max_connections": "200",
            # Durability as a production server keeps it: a commit waits for its WAL flush.
            "fsync": "on",
            "synchronous_commit": "on",
        }
        conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
        subprocess.run(
            _as_postgres(run_as, "sh", "-c", f"cat >> {data / 'postgresql.conf'}"),
            input=conf.encode(),
            check=True,
        )
        subprocess.run(
            _as_postgres(run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start"),
            check=True,
            capture_output=True,
        )
        cluster = PrivateCluster(data, port, run_as)
        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True
        ) as c:
            c.execute(f"CREATE ROLE {SERVER_ROLE} LOGIN")
            c.execute(f"CREATE DATABASE {DATABASE} OWNER {SERVER_ROLE}")
        with psycopg.connect(cluster.admin_dsn, autocommit=True) as c:
            c.execute("CREATE EXTENSION pg_stat_statements")
        yield cluster
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres(run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"),
                capture_output=True,
            )
        shutil.rmtree(base, ignore_errors=True)
