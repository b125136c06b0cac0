"""Reading device request bodies safely and answering device errors plainly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask import Request, Response


class BodyTooLarge(ValueError):
    """A device body past its size limit: refused before it is all read."""

    http_status = 413


def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused past max_bytes before it is all read (413)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(f"body larger than {max_bytes} bytes")
    body = request.stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise BodyTooLarge(f"body larger than {max_bytes} bytes")
    return body


def plain(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")


# Hikeshi's command UUIDs (and Apple's) as they appear in any plist encoding: ASCII text.
_UUID = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_CHUNK = 1024 * 1024
_MAX_CANDIDATES = 10_000


class OversizedBody:
    """A body past the limit for parsing, read once in chunks, never held whole.

    Iterating yields the body's bytes (for a streamed signature check), counts them, and notes
    every UUID-shaped string in it, so that once the sender is authenticated the caller can tell
    which of that device's own commands the answer is about. Past `hard_cap` bytes it raises
    BodyTooLarge: such a body is not read to its end, so nothing about it can be trusted.
    """

    def __init__(self, prefix: bytes, stream: Any, hard_cap: int) -> None:
        self._prefix = prefix
        self._stream = stream
        self.hard_cap = hard_cap
        self.size = 0
        self.uuids: set[str] = set()
        self.consumed = False

    def __iter__(self) -> Iterator[bytes]:
        if self.consumed:
            raise RuntimeError("an oversized body can be read only once")
        self.consumed = True
        tail = b""
        chunk, self._prefix = self._prefix, b""
        while True:
            if not chunk:
                chunk = self._stream.read(_CHUNK)
                if not chunk:
                    return
            self.size += len(chunk)
            if self.size > self.hard_cap:
                raise BodyTooLarge(f"body larger than {self.hard_cap} bytes")
            window = tail + chunk
            if len(self.uuids) < _MAX_CANDIDATES:
                self.uuids.update(m.group().decode("ascii").upper() for m in _UUID.finditer(window))
            tail = window[-35:]  # a UUID split across two chunks is found in the next window
            yield chunk
            chunk = b""


def read_answer(request: Request, max_bytes: int, hard_cap: int) -> bytes | OversizedBody:
    """The body when it is at most `max_bytes`; past that an OversizedBody to stream (413 at once
    when the declared length is beyond `hard_cap`)."""
    hard_cap = max(hard_cap, max_bytes)
    length = request.content_length
    if length is not None and length > hard_cap:
        raise BodyTooLarge(f"body larger than {hard_cap} bytes")
    if length is not None and length > max_bytes:
        return OversizedBody(b"", request.stream, hard_cap)
    body = request.stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        return OversizedBody(body, request.stream, hard_cap)
    return body
