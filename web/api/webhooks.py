"""Webhooks: create (the signing secret is shown once), list, disable or enable, send a signed
test, and read the delivery log. Every change is audited; the URL must reach a public address
unless HIKESHI_WEBHOOK_ALLOW_NETWORKS allows it (mdm.services.alerts.destinations)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from mdm.doors.appctx import db_session, settings
from mdm.ground.audit import record_event
from mdm.ground.models import Webhook
from mdm.services.alerts.webhooks import (
    WebhookError,
    create_webhook,
    list_webhooks,
    post_delivery,
    recent_deliveries,
    set_webhook_enabled,
    trial_delivery,
)
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, Extended, permission
from web.api.schemas import Text
from web.errors import ApiError, field_error
from web.rbac import Permission

blp = ApiBlueprint(
    "webhooks", __name__, url_prefix="/api/v1", description="Webhooks for alerts and readiness changes"
)


class WebhookCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(min=1, max=100))
    url = Text(
        required=True,
        validate=validate.Length(min=1, max=1024),
        metadata={"description": "https:// URL of a public address (or an allow-listed network)"},
    )


class WebhookSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    url = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(
        required=True, metadata={"description": "HMAC key of the signatures; shown only this once"}
    )


class WebhookListSchema(Schema):
    items = fields.List(fields.Nested(WebhookSchema), required=True)


class DeliverySchema(Schema):
    id = fields.Integer(required=True)
    alert_id = fields.Integer(required=True)
    status = fields.String(required=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    delivered_at = fields.DateTime(allow_none=True, required=True)
    next_attempt_at = fields.DateTime(allow_none=True, required=True)


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)


class TestSendSchema(Schema):
    ok = fields.Boolean(required=True)
    status_code = fields.Integer(allow_none=True, required=True)
    error = fields.String(allow_none=True, required=True)
    duration_ms = fields.Integer(required=True)


def _webhook_or_404(webhook_id: int) -> Webhook:
    webhook = db_session().get(Webhook, webhook_id)
    if webhook is None:
        raise ApiError(404, f"no webhook with id {webhook_id}")
    return webhook


@blp.route("/webhooks", methods=["GET"])
@blp.response(200, WebhookListSchema)
@permission(Permission.SETTINGS_READ)
def list_all() -> Any:
    """Every webhook (never its secret)."""
    return {"items": list_webhooks(db_session())}


@blp.route("/webhooks", methods=["POST"])
@blp.arguments(WebhookCreateSchema)
@blp.response(201, WebhookCreatedSchema)
@permission(Permission.SETTINGS_WRITE)
def create(body: dict[str, Any]) -> Any:
    """Create a webhook; the answer carries its signing secret, shown only this once."""
    session = db_session()
    conf = settings()
    try:
        webhook, secret = create_webhook(
            session,
            current_principal().actor,
            body["name"],
            body["url"],
            secret_key=conf.secret_key,
            allow_networks=conf.webhook_allow_networks,
        )
    except WebhookError as exc:
        raise field_error(exc.field, str(exc).split(": ", 1)[-1]) from exc
    session.commit()
    return Extended(webhook, secret=secret)


@blp.route(f"/webhooks/<{ID}:webhook_id>/disable", methods=["POST"])
@blp.response(200, WebhookSchema)
@permission(Permission.SETTINGS_WRITE)
def disable(webhook_id: int) -> Any:
    """Stop delivering to it; pending deliveries wait until it is enabled again."""
    session = db_session()
    webhook = set_webhook_enabled(session, current_principal().actor, _webhook_or_404(webhook_id), False)
    session.commit()
    return webhook


@blp.route(f"/webhooks/<{ID}:webhook_id>/enable", methods=["POST"])
@blp.response(200, WebhookSchema)
@permission(Permission.SETTINGS_WRITE)
def enable(webhook_id: int) -> Any:
    """Deliver to it again."""
    session = db_session()
    webhook = set_webhook_enabled(session, current_principal().actor, _webhook_or_404(webhook_id), True)
    session.commit()
    return webhook


@blp.route(f"/webhooks/<{ID}:webhook_id>/test", methods=["POST"])
@blp.response(200, TestSendSchema)
@permission(Permission.SETTINGS_WRITE)
def test_send(webhook_id: int) -> Any:
    """POST a signed `webhook.test` body now (address checks as for real deliveries); audited."""
    session = db_session()
    conf = settings()
    webhook = _webhook_or_404(webhook_id)
    outgoing = trial_delivery(webhook, secret_key=conf.secret_key)
    session.rollback()  # no transaction stays open while the receiver answers
    outcome = post_delivery(
        outgoing, timeout=conf.webhook_timeout_seconds, allow_networks=conf.webhook_allow_networks
    )
    record_event(
        session,
        current_principal().actor,
        "webhook.test_sent",
        "webhook",
        webhook_id,
        {"status_code": outcome.status_code, "error": outcome.error},
    )
    session.commit()
    return {
        "ok": outcome.ok,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "duration_ms": outcome.duration_ms,
    }


@blp.route(f"/webhooks/<{ID}:webhook_id>/deliveries", methods=["GET"])
@blp.response(200, DeliveryListSchema)
@permission(Permission.SETTINGS_READ)
def deliveries(webhook_id: int) -> Any:
    """The delivery log of the webhook, newest first (at most 100)."""
    _webhook_or_404(webhook_id)
    return {"items": recent_deliveries(db_session(), webhook_id)}
