"""`hikeshi scheduler`: the scheduler as its own process (production)."""

from __future__ import annotations

import logging
import os
import signal
import threading

import click

from mdm.ground.config import Settings
from mdm.ground.db import DatabaseBehind
from mdm.ground.logsetup import configure_logging
from mdm.roots.scheduler.jobs import JOBS


@click.command("scheduler")
@click.option("--job", "jobs", multiple=True, type=click.Choice(sorted(JOBS)), help="Run only these jobs.")
@click.option("--exit-with-parent", "parent_pid", type=int, default=None, hidden=True)
def scheduler_command(jobs: tuple[str, ...], parent_pid: int | None) -> None:
    """Run the periodic jobs; a second scheduler waits for the first instead of running them twice."""
    from mdm.roots.scheduler.runner import run_scheduler

    configure_logging("INFO", unless_configured=True)
    settings = Settings.from_env()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    if parent_pid is not None:
        _exit_with_parent(parent_pid, stop)
    try:
        run_scheduler(settings, stop, jobs=list(jobs) or None)
    except DatabaseBehind as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_with_parent(parent_pid: int, stop: threading.Event) -> None:
    """Started by `hikeshi serve`: stop when the server's master is gone, even if killed."""

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                logging.getLogger(__name__).warning("scheduler: server %s is gone; stopping", parent_pid)
                stop.set()

    threading.Thread(target=watch, name="hikeshi-parent-watch", daemon=True).start()
