"""What the Android service and its door agree on (docs/android-agent-protocol.md): the protocol
version an answer carries, the platform's name, how many commands one sync hands over, and how a
refused request is said."""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION = 1
PLATFORM = "android"
# Commands handed to the agent in one sync answer; the rest follow at the next sync.
MAX_COMMANDS_PER_SYNC = 20


class ProtocolError(Exception):
    """A refused request: HTTP status, a stable error code, a message and the offending field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "error": self.code, "message": self.message}
        reason = getattr(self, "reason_code", None)
        if reason is not None:
            out["reason"] = reason
        if self.field is not None:
            out["field"] = self.field
        return out
