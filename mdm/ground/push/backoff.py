"""Retry delays for push: exponential backoff with full jitter, and the server's Retry-After.

Full jitter (a random delay between 0 and the exponential ceiling) spreads the retries of many
devices that failed together, so an APNs outage does not end in a synchronized stampede.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

from mdm.ground import clock


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt `attempt` (from 1): uniform in [0, min(cap, base * 2**(n-1))]."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return max(0.0, ceiling * rand())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks us to wait (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT; the parser leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())
