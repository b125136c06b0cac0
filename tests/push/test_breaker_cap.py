"""The APNs circuit breaker backs off, but never so far that a lock queued right after APNs comes
back waits minutes for the next trial (the 30-minute fault soak measured waits up to 2.5 minutes
with a 300 s cap)."""

from __future__ import annotations

from mdm.ground.push.breaker import CircuitBreaker


def test_a_long_outage_backs_off_to_at_most_a_minute() -> None:
    breaker = CircuitBreaker()
    now = 0.0
    waits = []
    for _ in range(40):  # a long outage: every trial fails
        breaker.record_failure(now)
        waits.append(breaker.retry_in(now))
        now += breaker.retry_in(now)
    assert waits[breaker.threshold - 1] == breaker.base_cooldown  # opened at the threshold
    assert waits == sorted(waits)  # backing off
    assert max(waits) == 60.0
    breaker.record_failure(now)
    assert not breaker.allows(now + 59.0) and breaker.allows(now + 60.0)
    now += 60.0
    breaker.record_success()
    assert breaker.allows(now) and breaker.retry_in(now) == 0.0
