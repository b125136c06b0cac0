"""`hikeshi scheduler`: the scheduler as its own process (production)."""

from __future__ import annotations

import logging
import signal
import threading

import click

from mdm.config import Settings
from mdm.db import DatabaseBehind
from mdm.scheduler.jobs import JOBS


@click.command("scheduler")
@click.option("--job", "jobs", multiple=True, type=click.Choice(sorted(JOBS)), help="Run only these jobs.")
def scheduler_command(jobs: tuple[str, ...]) -> None:
    """Run the periodic jobs; a second scheduler waits for the first instead of running them twice."""
    from mdm.scheduler.runner import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_scheduler(settings, stop, jobs=list(jobs) or None)
    except DatabaseBehind as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
