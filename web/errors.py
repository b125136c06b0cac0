"""Errors: one JSON shape for the API, a page for the console, untouched responses elsewhere.

API error body, everywhere under /api/: `{"error": {"code", "message", "fields"}}`, where
`fields` maps each bad input to its messages (empty when no single input is at fault).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from web.refusals import record_refusal

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
CONSOLE_PREFIX = "/console"

_CODES = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
}


class ApiError(HTTPException):
    """Raised by API code; rendered in the one error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description=message)
        self.code = status
        self.error_code = code or _CODES.get(status, "error")
        self.fields = dict(fields or {})
        self.extra_headers = dict(headers or {})


def field_error(field: str, message: str, status: int = 400) -> ApiError:
    return ApiError(status, f"{field}: {message}", fields={field: [message]})


def flatten_messages(messages: Any) -> dict[str, Any]:
    """webargs keys messages by location ({"json": {...}}); clients want the field names."""
    if not isinstance(messages, Mapping):
        return {"_request": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict[str, Any] = {}
    for location, inner in messages.items():
        if location in ("json", "query", "querystring", "form", "files", "headers", "view_args", "path"):
            if isinstance(inner, Mapping):
                flat.update({str(k): v for k, v in inner.items()})
            else:
                flat["_" + str(location)] = inner
        else:
            flat[str(location)] = inner
    return flat


def api_error_response(status: int, message: str, code: str | None = None, fields: Any = None) -> Response:
    body = {
        "error": {"code": code or _CODES.get(status, "error"), "message": message, "fields": fields or {}}
    }
    response = jsonify(body)
    response.status_code = status
    return response


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX)


def is_console_request() -> bool:
    return request.path == "/" or request.path.startswith(CONSOLE_PREFIX)


def _handle_http_exception(exc: HTTPException) -> Any:
    status = exc.code or 500
    if status in (400, 403, 404) and (is_api_request() or is_console_request()):
        record_refusal(status)
    if is_api_request():
        if isinstance(exc, ApiError):
            response = api_error_response(status, str(exc.description), exc.error_code, exc.fields)
            response.headers.update(exc.extra_headers)
            return response
        data = getattr(exc, "data", None) or {}
        fields = flatten_messages(data["messages"]) if "messages" in data else {}
        message = data.get("message") or _plain_message(status, exc, fields)
        response = api_error_response(status, message, fields=fields)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response
    if is_console_request() and status in (400, 403, 404, 405, 413, 500):
        description = exc.description if isinstance(exc, ApiError) else None
        return render_template("console/error.html", status=status, description=description), status
    return exc


def _plain_message(status: int, exc: HTTPException, fields: Mapping[str, Any]) -> str:
    if status == 400 and fields:
        return "invalid input: " + ", ".join(sorted(fields))
    if status == 404:
        return "no such resource"
    if status == 500:
        return "internal error; the incident has been logged"
    return exc.name


def _handle_unexpected(exc: Exception) -> Any:
    if isinstance(exc, HTTPException):
        return _handle_http_exception(exc)
    if not (is_api_request() or is_console_request()):
        # Device endpoints keep Flask's own handling (and tests see the exception).
        raise exc
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _handle_http_exception(InternalServerError(original_exception=exc))


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
