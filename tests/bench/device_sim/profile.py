"""Where a measured window's server CPU goes: py-spy over the `hikeshi serve` process tree for
exactly the window (not the enrollment or the warm-up around it), when HIKESHI_BENCH_PROFILE_DIR
names a folder. One raw file per window (`<workload>-<workers>w-<n>.txt`: folded stacks and a
sample count per line), sampled only while a thread holds the GIL (--gil), so it counts CPU,
not waiting. py-spy is not a test dependency: `pip install py-spy` where this is wanted.
`python -m tests.bench.device_sim.profile FILE [FRAME]` prints the functions that take the most of
the samples under FRAME (default: gunicorn's request handling), each counted once per stack.

py-spy runs in its own process, outside the measured process tree, and reads the server's stacks
without pausing it (--nonblocking). Still, read a profile for its shares and the benchmark's own
figures from a run without it: one profiled Apple run here had command windows ten times slower
than usual (47 against 5 ms per request), and the next one, with the same settings, did not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PROFILE_DIR = os.environ.get("HIKESHI_BENCH_PROFILE_DIR")
_RATE = "250"  # samples per second: enough for a window of seconds, light on a 2-core machine


@dataclass
class WindowProfile:
    proc: subprocess.Popen[bytes] | None = None
    path: Path | None = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        print(f"  profile of the window: {self.path}", flush=True)


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError(
            "HIKESHI_BENCH_PROFILE_DIR is set but py-spy is not installed (pip install py-spy)"
        )
    return found


def start_profile(server_pid: int, workload: str, workers: int) -> WindowProfile:
    """py-spy recording the server from now until `stop`; nothing when no folder is named."""
    if not PROFILE_DIR:
        return WindowProfile()
    folder = Path(PROFILE_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{workload.replace(' ', '-')}-{workers}w"
    n = 1 + sum(1 for _ in folder.glob(f"{stem}-*.txt"))
    path = folder / f"{stem}-{n}.txt"
    command = [_py_spy(), "record", "--pid", str(server_pid), "--subprocesses", "--gil", "--nonblocking"]
    command += ["--rate", _RATE, "--format", "raw", "--output", str(path)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return WindowProfile(proc, path)


def _function(frame: str) -> str:
    """ "name (path/file.py:line)" → "name file.py": a function once, whatever line it was on."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.rpartition(':')[0].rpartition('/')[2]}" if where else name


def summary(path: Path, under: str = "handle_request", top: int = 40) -> list[str]:
    """The functions in most of the samples below the first frame naming `under`, as shares of
    those samples (inclusive: a function is counted once in each stack it is on)."""
    shares: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        start = next((i for i, frame in enumerate(frames) if under in frame), None)
        if start is None or not count.isdigit():
            continue
        total += int(count)
        names = {_function(frame) for frame in frames[start:]}
        for name in names:
            shares[name] = shares.get(name, 0) + int(count)
    ranked = sorted(shares.items(), key=lambda item: -item[1])[:top]
    return [f"{total} samples under {under!r}"] + [f"{n * 100 / total:5.1f}%  {name}" for name, n in ranked]


if __name__ == "__main__":
    print("\n".join(summary(Path(sys.argv[1]), *sys.argv[2:3])))
