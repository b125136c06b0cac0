"""Reading device request bodies safely and answering device errors plainly."""

from __future__ import annotations

from flask import Request, Response

from mdm.apple.plist_codec import BodyTooLarge


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
