"""The REST API under /api/v1 (flask-smorest), described at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from web.api import (
    alerts,
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
)
MAX_BODY = 1024 * 1024


class HikeshiApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        # web.errors renders every error of the application, the API's in the one JSON shape.
        pass


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
