"""The unit's update policy as the Android policy's `systemUpdate` (the Android Management API's
SystemUpdate: AUTOMATIC, WINDOWED with startMinutes/endMinutes, POSTPONE).

WINDOWED installs in the longest stretch of the day outside the unit's blocked windows (a shift
change never sees a reboot); with no blocked window it opens at the policy's install time for
four hours. Android has no "install version X by date Y": the deadline and target are Apple's.
"""

from __future__ import annotations

from typing import Any

from mdm.services.osupdates.policy import UpdatePolicy, minutes_of

DAY = 24 * 60
DEFAULT_WINDOW_MINUTES = 4 * 60


def _free_stretch(policy: UpdatePolicy) -> tuple[int, int]:
    blocked = [False] * DAY
    for window in policy.blocked_windows:
        minute = window.start_minutes
        while minute != window.end_minutes:
            blocked[minute] = True
            minute = (minute + 1) % DAY
    if not any(blocked):
        start = minutes_of(policy.install_time)
        return start, (start + DEFAULT_WINDOW_MINUTES) % DAY
    if all(blocked):
        return -1, -1
    # Walk once round the clock from a blocked minute, so a free stretch across midnight is one run.
    origin = blocked.index(True)
    best_start, best_length, run_start, run_length = 0, 0, 0, 0
    for step in range(1, DAY + 1):
        minute = (origin + step) % DAY
        if blocked[minute]:
            run_length = 0
            continue
        if run_length == 0:
            run_start = minute
        run_length += 1
        if run_length > best_length:
            best_start, best_length = run_start, run_length
    # The window ends where the next blocked window starts.
    return best_start, (best_start + best_length) % DAY


def system_update(policy: UpdatePolicy) -> dict[str, Any] | None:
    """The `systemUpdate` field, or None when the unit sets no Android mode."""
    if policy.android_mode is None:
        return None
    if policy.android_mode == "automatic":
        return {"type": "AUTOMATIC"}
    if policy.android_mode == "postpone":
        return {"type": "POSTPONE"}
    start, end = _free_stretch(policy)
    if start < 0:
        return {"type": "POSTPONE"}  # every minute is blocked: nothing may install
    return {"type": "WINDOWED", "startMinutes": start, "endMinutes": end}
