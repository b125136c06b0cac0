"""The benchmark's profile summary (tests/bench/device_sim/profile.py) reads py-spy's raw output:
folded stacks, one per line, and a sample count. A function is counted once per stack (a
recursive one is not counted twice), only below the frame asked for, and as a share of the
samples that have that frame."""

from __future__ import annotations

from pathlib import Path

from tests.bench.device_sim.profile import summary

RAW = "\n".join(
    [
        "run (threading.py:1);handle_request (gthread.py:10);sync (sync.py:5);read (identity.py:9) 6",
        "run (threading.py:1);handle_request (gthread.py:10);sync (sync.py:7);sync (sync.py:8) 3",
        "run (threading.py:1);handle_request (gthread.py:11);log (glogging.py:3) 1",
        "run (threading.py:1);idle (threading.py:2) 90",
        "a line py-spy never writes",
    ]
)


def test_shares_are_of_the_samples_below_the_frame_and_once_per_stack(tmp_path: Path) -> None:
    path = tmp_path / "empty-1w-1.txt"
    path.write_text(RAW)
    lines = summary(path)
    assert lines[0] == "10 samples under 'handle_request'"
    shares = {line.split("%  ")[1]: float(line.split("%")[0]) for line in lines[1:]}
    assert shares == {
        "handle_request gthread.py": 100.0,
        "sync sync.py": 90.0,  # 6 + 3, though the second stack holds it twice
        "read identity.py": 60.0,
        "log glogging.py": 10.0,
    }
    assert summary(path, "sync (")[0] == "9 samples under 'sync ('"
