"""The scheduler as a child process of another long-running process (`hikeshi serve`).

Not a thread: gunicorn's master forks web workers at any time (start, respawn, reload), and a
fork copies whatever C-level lock another thread holds at that instant. With the scheduler as a
thread of the master, a worker forked while a job was inside SQLite hung for ever in
`sqlite3.connect`. A child started by exec shares nothing with the master, which stays
single-threaded apart from a watcher that only starts and reaps this child.

The child takes the same exactly-once lock as `hikeshi scheduler` and exits when its parent
goes (it watches its parent pid), so a killed server never leaves a scheduler behind.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

log = logging.getLogger(__name__)


class SchedulerProcess:
    """Start, watch (restarting it if it dies), and stop the scheduler child."""

    def __init__(self, *, restart_delay: float = 5.0) -> None:
        self._restart_delay = restart_delay
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> int:
        self._stop.clear()
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="hikeshi-scheduler-watch", daemon=True)
        self._watcher.start()
        assert self._proc is not None
        return self._proc.pid

    def _spawn(self) -> None:
        command = [sys.executable, "-m", "mdm.roots.scheduler", "--exit-with-parent", str(os.getpid())]
        with self._lock:
            # Its own session: a Ctrl-C at the terminal reaches the master, which stops the
            # scheduler in order (SIGTERM, jobs under way finish) instead of interrupting it.
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        log.info("scheduler: started as process %s", self._proc.pid)

    def _watch(self) -> None:
        while not self._stop.wait(self._restart_delay):
            proc = self._proc
            # gunicorn's master reaps every child it sees exit; poll() then reports it as exited.
            if proc is not None and proc.poll() is not None and not self._stop.is_set():
                self._spawn()
                log.error(
                    "scheduler process %s exited (%s); started process %s",
                    proc.pid,
                    proc.returncode,
                    self.pid,
                )

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # the scheduler finishes the jobs under way, then releases its lock
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("scheduler process %s did not stop in %.0f s; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait()
        except ChildProcessError:  # already reaped by gunicorn
            pass
