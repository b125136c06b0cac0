"""A circuit breaker for APNs: after repeated failed batches, stop hammering it for a while.

While open, push requests wait in memory and are sent in one batch when the breaker lets a trial
through. Nothing depends on them: commands are in the database and devices fetch them at check-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    threshold: int = 3  # consecutive failed batches before opening
    base_cooldown: float = 5.0
    # A command queued just after APNs comes back waits for the next trial at most this long (the
    # 30-minute fault soak saw locks wait minutes at a 300 s cap); a trial a minute costs APNs nothing.
    max_cooldown: float = 60.0
    failures: int = 0
    opened_at: float | None = None
    cooldown: float = field(default=0.0)

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.cooldown = 0.0

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            # Each further failure while open doubles the wait, up to the cap.
            exponent = self.failures - self.threshold
            self.cooldown = min(self.max_cooldown, self.base_cooldown * (2**exponent))
            self.opened_at = now

    def allows(self, now: float) -> bool:
        return self.opened_at is None or now >= self.opened_at + self.cooldown

    def retry_in(self, now: float) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - now)
