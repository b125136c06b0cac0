"""The REST API under /api/v1 (flask-smorest), described at /api/v1/openapi.json."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from flask_smorest import Api, Blueprint

from web.api import (
    alerts,
    amapi,
    apps,
    audit,
    compliance_policy,
    device_identity,
    device_labels,
    devices,
    enrollment,
    incident_policy,
    incidents,
    inventory,
    me,
    orgunits,
    os_updates,
    profiles,
    readiness,
    tokens,
    users,
    vpp,
    webhooks,
)
from web.api.auth import authenticate_request
from web.api.base import PublicIdConverter, public_id_schema
from web.api.schemas import ErrorSchema

# One line a blueprint, in the order they appear in the OpenAPI document.
BLUEPRINTS = (
    me.blp,
    devices.blp,
    device_labels.blp,
    device_identity.blp,
    inventory.blp,
    alerts.blp,
    orgunits.blp,
    profiles.blp,
    apps.blp,
    enrollment.blp,
    users.blp,
    tokens.blp,
    audit.blp,
    incidents.blp,
    incident_policy.blp,
    compliance_policy.blp,
    readiness.blp,
    webhooks.blp,
    vpp.blp,
    os_updates.blp,
    amapi.blp,
)
MAX_BODY = 1024 * 1024


class HikeshiApi(Api):
    """The API, whose OpenAPI document is written when first read (/api/v1/openapi.json), not at
    start: describing every operation was most of an application's start-up, which every worker
    and every test paid, and only a reader of the document needs it."""

    ERROR_SCHEMA = ErrorSchema

    @property
    def spec(self) -> Any:
        self._describe_registered()
        return self.__dict__.get("_spec")

    @spec.setter
    def spec(self, value: Any) -> None:
        self.__dict__["_spec"] = value

    def register_blueprint(self, blp: Blueprint, *, parameters: Any = None, **options: Any) -> None:
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self.__dict__.setdefault("_undescribed", []).append((blp, name, parameters))

    def _describe_registered(self) -> None:
        if not self.__dict__.get("_undescribed"):
            return
        with _DESCRIBING:
            # Emptied only once written: a second reader waits for the complete document.
            undescribed = self.__dict__.get("_undescribed") or []
            spec = self.__dict__["_spec"]
            for blp, name, parameters in undescribed:
                blp.register_views_in_doc(self, self._app, spec, name=name, parameters=parameters)
                spec.tag({"name": name, "description": blp.description})
            self.__dict__["_undescribed"] = []

    def _register_error_handlers(self) -> None:
        # web.errors renders every error of the application, the API's in the one JSON shape.
        pass


# One document is written at a time: the first readers of several applications' documents wait.
_DESCRIBING = threading.Lock()


def init_app(app: Flask) -> Api:
    app.config.update(
        API_TITLE="Hikeshi MDM",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Devices, commands, org units, enrollment tokens, users and the audit "
                "trail of Hikeshi MDM. Authenticate with `Authorization: Bearer <API token>`. "
                'Every error has the body `{"error": {"code", "message", "fields"}}`.'
            },
            "security": [{"bearerAuth": []}],
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "hks_…"}
                }
            },
        },
    )
    app.url_map.converters["public_id"] = PublicIdConverter
    api = HikeshiApi(app)
    api.register_converter(PublicIdConverter, public_id_schema)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    app.before_request(_limit_body)
    app.before_request(authenticate_request)
    return api


def _limit_body() -> None:
    from flask import request

    if request.path == apps.UPLOAD_PATH:
        request.max_content_length = apps.MAX_PACKAGE_BYTES  # an .ipa or .apk, checked once read
    elif request.path.startswith("/api/"):
        request.max_content_length = MAX_BODY
