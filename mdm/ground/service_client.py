"""What a client of one of Apple's web services needs whatever the service: its error (with the
HTTP status), its JSON answer checked, and its calls retried: 429 and 5xx after the `Retry-After`
the service asks for (seconds or an HTTP date), else after an exponential backoff, a bounded
number of times.

Shared by the device assignment (ADE) and Apps and Books clients, which differ only in how
they sign a request and word an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from mdm.ground.push.backoff import parse_retry_after

MAX_ATTEMPTS = 5
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0


class ServiceError(RuntimeError):
    """The service refused or could not be reached; `status` is its HTTP status when it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def json_object(response: httpx.Response, what: str, error: type[ServiceError]) -> dict[str, Any]:
    """The answer's JSON object, else `error` naming the call (`what`)."""
    try:
        value = response.json()
    except ValueError as exc:
        raise error(f"{what}: the answer is not JSON", status=response.status_code) from exc
    if not isinstance(value, dict):
        raise error(f"{what}: the answer is not a JSON object", status=response.status_code)
    return value


def retry_after(value: str | None, fallback: float) -> float:
    """Seconds to wait: the header's seconds or HTTP date, else the backoff's own delay."""
    asked = parse_retry_after(value)
    # A longer wait than a few backoffs would hold a sync (and its caller) for too long.
    return fallback if asked is None else min(asked, BACKOFF_MAX * 5)


@dataclass(kw_only=True)
class RetryingClient:
    """What a client of such a service carries to retry its calls."""

    # Injected so tests can see the waits without taking them.
    sleep: Callable[[float], None] = time.sleep
    max_attempts: int = MAX_ATTEMPTS
    waits: list[float] = field(default_factory=list)

    def send_retried(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """The first answer that is neither 429 nor 5xx, else the last one; the last attempt's
        transport error is raised for the client to word."""
        delay = BACKOFF_START
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = send()
            except httpx.TransportError:
                if attempt == self.max_attempts:
                    raise
                self._wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if response.status_code != 429 and response.status_code < 500:
                return response
            if attempt == self.max_attempts:
                return response
            self._wait(retry_after(response.headers.get("Retry-After"), delay))
            delay = min(delay * 2, BACKOFF_MAX)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleep(seconds)
