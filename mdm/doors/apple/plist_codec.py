"""Decode the property lists Apple devices send, encode the commands we send back.

Device bodies arrive before we know who sent them (the signature is checked on the same request), so
the decoder treats every body as hostile: size is capped before parsing, XML may carry only Apple's
own plist DOCTYPE (no internal subset, no entity declarations: billion laughs, external entities),
and binary plists, whose objects can reference each other, are walked with a node budget so a
shared or cyclic structure cannot blow up whatever later walks the result.
"""

from __future__ import annotations

import codecs
import plistlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mdm.doors import bodies

DEFAULT_MAX_BYTES = 1024 * 1024
# Real MDM messages nest a handful of levels (ProfileList → PayloadContent → ...); a deeper tree only
# serves to make recursive consumers (JSON encoding of the stored message) overflow the stack.
MAX_DEPTH = 64

_BINARY_MAGIC = b"bplist00"
_UTF8_BOM_BYTES = b"\xef\xbb\xbf"

# The only DOCTYPE a device (or plistlib, or Apple's CFPropertyList) writes. The older public id
# "Apple Computer" is still emitted by some Apple tools. No internal subset can match: the closing
# ">" must follow the system literal.
_APPLE_DOCTYPE = re.compile(
    rb'<!DOCTYPE\s+plist\s+PUBLIC\s+"-//Apple(?: Computer)?//DTD PLIST 1\.0//EN"\s+'
    rb'"http://www\.apple\.com/DTDs/PropertyList-1\.0\.dtd"\s*>'
)
_XML_DECLARATION = re.compile(rb"<\?xml\b([^>]*?)\?>")
_DECLARED_ENCODING = re.compile(rb"""\bencoding\s*=\s*["']([^"']*)["']""")
_DOCTYPE_WORD = re.compile(rb"\s*doctype", re.IGNORECASE)
_UTF8_CHUNK = 64 * 1024


class PlistError(ValueError):
    """A device body that cannot be accepted; `http_status` is what the handler answers."""

    http_status = 400


class BodyTooLarge(bodies.BodyTooLarge, PlistError):
    """A plist past its size limit: a refusal of this codec (PlistError) and of the doors' body
    reading alike, so a handler catching either answers 413."""

    http_status = 413


class UnsafePlist(PlistError):
    """DOCTYPE other than Apple's, internal DTD subset, entity or other markup declarations."""


class MalformedPlist(PlistError):
    """Not a plist, truncated, not UTF-8, or not a dictionary at the top."""


def decode_message(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The dictionary in a device's check-in or command-result body (XML or binary plist)."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise MalformedPlist("body must be bytes")
    if len(body) > max_bytes:
        raise BodyTooLarge(f"body of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    if not isinstance(body, bytes):
        body = bytes(body)
    if not body:
        raise MalformedPlist("empty body")

    if body.startswith(_BINARY_MAGIC):
        fmt = plistlib.FMT_BINARY
    else:
        _check_xml_is_safe(body)
        fmt = plistlib.FMT_XML
    try:
        value = plistlib.loads(body, fmt=fmt)
    except Exception as exc:  # plistlib raises a dozen types on hostile input; all mean "not a plist"
        raise MalformedPlist("body is not a valid property list") from exc

    if not isinstance(value, dict):
        raise MalformedPlist("top level of the property list is not a dictionary")
    _check_shape(value, node_budget=len(body))
    return value


def encode_command(command_uuid: str, request_type: str, params: Mapping[str, Any]) -> bytes:
    """The XML plist of one command, as the device expects it in the response to /mdm/connect."""
    if not isinstance(command_uuid, str) or not command_uuid:
        raise ValueError("command_uuid must be a non-empty string")
    if not isinstance(request_type, str) or not request_type:
        raise ValueError("request_type must be a non-empty string")
    if "RequestType" in params:
        raise ValueError("params must not contain RequestType; pass it as request_type")
    command: dict[str, Any] = {"RequestType": request_type, **params}
    return plistlib.dumps(
        {"CommandUUID": command_uuid, "Command": command}, fmt=plistlib.FMT_XML, sort_keys=False
    )


def _check_xml_is_safe(body: bytes) -> None:
    # Scanned as bytes, never decoded whole: a command answer can be tens of MiB, and a decoded
    # copy (up to four bytes a character) plus slices of it would multiply that. In UTF-8 the
    # ASCII bytes of "<!" never occur inside another character, so the scan sees what expat sees
    # once the body is known to be UTF-8. Pinning UTF-8 keeps a UTF-16 or EBCDIC body from
    # hiding a DOCTYPE: XML forbids U+0000, and UTF-16/32 markup always carries NUL bytes.
    if b"\x00" in body:
        raise MalformedPlist("XML property list must be UTF-8")
    _check_utf8(body)
    start = len(_UTF8_BOM_BYTES) if body.startswith(_UTF8_BOM_BYTES) else 0

    declaration = _XML_DECLARATION.match(body, start)
    if declaration is not None:
        encoding = _DECLARED_ENCODING.search(declaration.group(1))
        if encoding is not None and encoding.group(1).strip().lower().replace(b"_", b"-") not in {
            b"utf-8",
            b"utf8",
        }:
            raise MalformedPlist("XML property list must declare UTF-8 encoding")

    doctypes = 0
    for found in re.finditer(b"<!", body):
        after = found.end()
        if body.startswith(b"--", after) or body.startswith(b"[CDATA[", after):
            continue
        if _DOCTYPE_WORD.match(body, after) and _APPLE_DOCTYPE.match(body, found.start()):
            doctypes += 1
            if doctypes > 1:
                raise UnsafePlist("more than one DOCTYPE declaration")
            continue
        # <!ENTITY, <!ELEMENT, <!ATTLIST, a foreign DOCTYPE or one with an internal subset.
        raise UnsafePlist("XML property list contains a DOCTYPE or declaration that is not allowed")


def _check_utf8(body: bytes) -> None:
    """Refuse a body that is not UTF-8, decoding a chunk at a time (nothing kept)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(body)
    try:
        for offset in range(0, len(view), _UTF8_CHUNK):
            decoder.decode(view[offset : offset + _UTF8_CHUNK], final=offset + _UTF8_CHUNK >= len(view))
    except UnicodeDecodeError as exc:
        raise MalformedPlist("XML property list must be UTF-8") from exc


_SCALARS = (str, bytes, bool, int, float, datetime)


def _check_shape(root: dict[str, Any], node_budget: int) -> None:
    """Refuse non-string keys, exotic values, excessive depth and trees larger than the body.

    Without shared objects a plist tree has at most one node per byte of its encoding, so a walk
    that visits more nodes than the body has bytes is following shared or cyclic references.
    """
    stack: list[tuple[Any, int]] = [(root, 1)]
    visited = 0
    while stack:
        value, depth = stack.pop()
        visited += 1
        if visited > node_budget:
            raise UnsafePlist("property list references objects repeatedly (shared or cyclic objects)")
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise UnsafePlist(f"property list nests deeper than {MAX_DEPTH} levels")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise MalformedPlist("property list dictionary key is not a string")
                visited += 1
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise UnsafePlist(f"property list nests deeper than {MAX_DEPTH} levels")
            stack.extend((item, depth + 1) for item in value)
        elif not isinstance(value, _SCALARS):
            raise MalformedPlist(f"property list holds an unsupported value type {type(value).__name__}")
