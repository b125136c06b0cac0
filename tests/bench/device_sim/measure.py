"""Readings around a load window: CPU time of a process tree (from /proc), percentiles."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which may itself hold spaces or parentheses.
    return text.rsplit(")", 1)[1].split()


def process_tree(root: int) -> set[int]:
    """`root` and every live descendant."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of the process tree under `root`: each live process's own (utime,
    stime: fields 14, 15) and that of its children it has reaped (cutime, cstime: 16, 17), so a
    PostgreSQL backend or autovacuum worker that exits inside the window still counts."""
    total = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:
            total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
