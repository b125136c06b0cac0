"""Bounds on what a caller can make the server parse, checked before any view runs.

Python's JSON decoder recurses once per nesting level (a deeply nested array is a RecursionError)
and refuses integers of more than 4,300 digits with a ValueError, and Werkzeug's int converter
hands any run of digits to the database (SQLite: OverflowError; PostgreSQL: out of range). Each
was a 500. Here, once for the API and the console: JSON bodies are bounded in size, nesting
depth and number length before a view or webargs parses them, and integer path segments are
bounded to the database's id range, so anything larger is simply not found (404).
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, abort, request
from werkzeug.routing import IntegerConverter, Map

from web.errors import ApiError, is_api_request, is_console_request

# Ids are 32-bit signed columns on every database we run on.
MAX_ID = 2**31 - 1
MAX_DEPTH = 32
# Longer than any 64-bit number; nothing we store needs more digits.
MAX_NUMBER_DIGITS = 20
CONSOLE_MAX_BODY = 5 * 1024 * 1024

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
# An integer (not the digits of a fraction or of a float's mantissa) longer than the bound.
_LONG_NUMBER = re.compile(rf"(?<![\d.])\d{{{MAX_NUMBER_DIGITS + 1},}}(?![\d.eE])")


class HostileJson(ValueError):
    """A JSON text beyond the bounds; the message says which bound, for a 400."""


class BoundedIntegerConverter(IntegerConverter):
    """`<int:...>` that matches at most 10 digits and at most MAX_ID unless a route says otherwise."""

    regex = r"\d{1,10}"

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = MAX_ID,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, MAX_ID if max is None else _smaller(max, MAX_ID), signed)


def _smaller(a: int, b: int) -> int:
    return a if a < b else b


def nesting_depth(text: str) -> int:
    """Deepest nesting of arrays and objects, found without recursion (strings skipped)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_json_text(text: str) -> None:
    """Raise HostileJson when `text` is nested deeper than MAX_DEPTH or holds an over-long number."""
    if nesting_depth(text) > MAX_DEPTH:
        raise HostileJson(f"JSON nested deeper than {MAX_DEPTH} levels")
    if _LONG_NUMBER.search(_STRING.sub('""', text)):
        raise HostileJson(f"JSON number longer than {MAX_NUMBER_DIGITS} digits")


def loads_bounded(text: str) -> Any:
    """json.loads for outside text (API bodies, JSON typed into console forms), within the bounds."""
    check_json_text(text)
    return json.loads(text)


def _check_body() -> None:
    if not (is_api_request() or is_console_request()) or not request.is_json:
        return
    if request.max_content_length is None:
        request.max_content_length = CONSOLE_MAX_BODY
    raw = request.get_data(cache=True)
    if not raw:
        return
    try:
        check_json_text(raw.decode("utf-8"))
    except UnicodeDecodeError:
        _refuse("the request body is not valid UTF-8")
    except HostileJson as exc:
        _refuse(str(exc))


def _refuse(message: str) -> None:
    if is_api_request():
        raise ApiError(400, message, fields={"_body": [message]})
    abort(400, description=message)


def install_converters(app: Flask) -> None:
    """Before any blueprint is registered, so every `<int:...>` rule gets the bounded converter."""
    app.url_map.converters["int"] = BoundedIntegerConverter


def init_app(app: Flask) -> None:
    app.before_request(_check_body)
