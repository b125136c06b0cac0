"""`hikeshi serve`: gunicorn with threaded workers, the app built once per worker.

On a single machine the scheduler runs with the server, owned by gunicorn's master (arbiter) and
never by a web worker: the master's `when_ready` hook starts it as a child process (not a thread:
see mdm.roots.scheduler.child) and `on_exit` stops it. It takes the same exactly-once lock as
`hikeshi scheduler`, so a scheduler already running elsewhere keeps the jobs and this one waits.
Production with a separate `hikeshi scheduler` turns it off (`--no-scheduler`,
HIKESHI_SCHEDULER_IN_SERVE=0).
"""

from __future__ import annotations

import gc
import logging
import os
import ssl
from dataclasses import dataclass
from typing import Any

import click
from flask import Flask
from gunicorn.app.base import BaseApplication

from mdm.ground.config import Settings
from mdm.ground.logsetup import AccessLogger, configure_logging
from mdm.ground.push.certificates import expiry_warning
from mdm.ground.transport import request_line_limit

log = logging.getLogger("hikeshi")


class _Server(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any], *, scheduler: bool = False) -> None:
        self._settings = settings
        self._options = options
        self._scheduler = MasterScheduler(settings) if scheduler else None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if self._scheduler is not None:
            self.cfg.set("when_ready", self._scheduler.when_ready)
            self.cfg.set("on_exit", self._scheduler.on_exit)

    def load(self) -> Flask:
        from mdm.roots.app import build_app
        from mdm.roots.distribution import refuse_package_clash

        refuse_package_clash()

        configure_logging("INFO")  # in each worker too: the app's own loggers, one format
        app = build_app(self._settings)
        # What is alive now (modules, models, schemas, routes: most of the heap) lives as long as
        # the worker. Out of the collector's full passes, which walked all of it every few hundred
        # requests: the readiness page at 100,000 devices took 75-100 ms then, 23 ms otherwise.
        gc.freeze()
        return app


class MasterScheduler:
    """The scheduler owned by the gunicorn master. The hooks run in the arbiter only; workers
    are forked from it but never start anything of the scheduler's."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._process: Any = None
        self.master_pid: int | None = None

    def when_ready(self, server: Any) -> None:
        from mdm.roots.scheduler.child import SchedulerProcess

        self.master_pid = os.getpid()
        self._process = SchedulerProcess()
        pid = self._process.start()
        server.log.info("scheduler: started as process %s (master %s)", pid, self.master_pid)

    def on_exit(self, server: Any) -> None:
        if self._process is None or os.getpid() != self.master_pid:
            return
        server.log.info("scheduler: stopping process %s", self._process.pid)
        self._process.stop(timeout=self._settings.scheduler_lock_poll_seconds + 30)
        self._process = None


@dataclass(frozen=True)
class TLSFiles:
    certfile: str
    keyfile: str


def tls_files(certfile: str | None, keyfile: str | None) -> TLSFiles | None:
    """--certfile/--keyfile, checked before anything starts: both or neither, and a key that
    belongs to the certificate (gunicorn would otherwise fail in every worker, after binding)."""
    if not certfile and not keyfile:
        return None
    if not (certfile and keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise click.BadParameter(
            f"{certfile} and {keyfile} are not a PEM certificate chain and its private key ({exc.reason})",
            param_hint="--certfile/--keyfile",
        ) from exc
    except OSError as exc:
        raise click.BadParameter(f"cannot read: {exc}", param_hint="--certfile/--keyfile") from exc
    return TLSFiles(certfile, keyfile)


def startup_warnings(settings: Settings) -> list[str]:
    from mdm.ground.db import make_engine, make_session_factory
    from mdm.ground.push.certificates import active_push_certificate

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            warning = expiry_warning(active_push_certificate(session))
    finally:
        engine.dispose()
    return [warning] if warning else []


def run_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    scheduler: bool = True,
    tls: TLSFiles | None = None,
) -> None:
    from enrollment.profile import ServerAnchorError, server_anchor_certificates

    try:  # every enrollment would fail on it: refused before the server starts
        server_anchor_certificates(settings)
    except ServerAnchorError as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in startup_warnings(settings):
        print(f"WARNING: {warning}", flush=True)
    url = f"{'https' if tls else 'http'}://{host}:{port}/"
    print(f"Hikeshi MDM listening on {url} (public URL {settings.public_url})", flush=True)
    if scheduler:
        print("Scheduler: in this server (a scheduler already running elsewhere keeps the jobs)", flush=True)
    else:
        print("Scheduler: off in this server; run `hikeshi scheduler` for the periodic jobs", flush=True)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 120,
        "graceful_timeout": 20,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn's access and error logs in our format, through the filter that redacts
        # enrollment secrets from request lines (mdm.ground.logsetup).
        "logger_class": AccessLogger,
        # SCEP clients (certmonger) send PKIOperation as GET: the message is in the request line.
        "limit_request_line": request_line_limit(settings),
    }
    if tls is not None:
        options.update(certfile=tls.certfile, keyfile=tls.keyfile)
    _Server(settings, options, scheduler=scheduler).run()
