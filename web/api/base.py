"""The flask-smorest pieces every API module shares: blueprint class, argument parser, path
converters, and the permission annotation read by web.api.auth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import flask_smorest
from flask import Request
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser
from werkzeug.routing import BaseConverter

from web.errors import ApiError, flatten_messages
from web.rbac import Permission

F = TypeVar("F", bound=Callable[..., Any])
PERMISSION_ATTR = "_hikeshi_permission"


class ApiParser(FlaskParser):
    # Bad input is 400 in Hikeshi, with the fields named; 422 is not used.
    DEFAULT_VALIDATION_STATUS = 400

    def handle_error(
        self,
        error: ValidationError,
        req: Request,
        schema: Schema,
        *,
        error_status_code: int | None,
        error_headers: Any,
    ) -> NoReturn:
        fields = flatten_messages(error.messages)
        raise ApiError(400, "invalid input: " + ", ".join(sorted(fields)), fields=fields)

    def _handle_invalid_json_error(
        self, error: Exception, req: Request, *args: Any, **kwargs: Any
    ) -> NoReturn:
        raise ApiError(400, "the request body is not valid JSON", fields={"_body": ["invalid JSON"]})


class ApiBlueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ApiParser()


def permission(required: Permission) -> Callable[[F], F]:
    """Declare the permission a view needs; web.api.auth refuses views that declare none."""

    def decorate(fn: F) -> F:
        setattr(fn, PERMISSION_ATTR, required)
        return fn

    return decorate


class PublicIdConverter(BaseConverter):
    """Path segments that name a thing by a public string id (command UUIDs, token ids)."""

    regex = r"[A-Za-z0-9_-]{1,64}"


def public_id_schema(_converter: BaseConverter) -> dict[str, Any]:
    return {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "maxLength": 64}


# Ids fit a 32-bit signed column on every database; a larger number is simply not found.
MAX_ID = 2**31 - 1
ID = f"int(max={MAX_ID})"


class Extended:
    """An object seen through a response schema with a few extra attributes (a one-time secret,
    a computed state) without copying it into a dict first."""

    def __init__(self, obj: Any, **extra: Any) -> None:
        self._obj = obj
        self.__dict__.update(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)
