"""Alerts for administrators: list, one alert with its webhook deliveries, acknowledge."""

from __future__ import annotations

from typing import Any

from mdm.doors.appctx import db_session
from mdm.ground.models import Alert
from mdm.services.alerts.service import AlertStateError, acknowledge_alert
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, Extended, permission
from web.api.inventory_schemas import AcknowledgeSchema, AlertDetailSchema, AlertPageSchema, AlertQuerySchema
from web.errors import ApiError, field_error
from web.queries import alert_deliveries, search_alerts, visible_alert
from web.rbac import Permission

blp = ApiBlueprint(
    "alerts", __name__, url_prefix="/api/v1", description="Alerts and their webhook deliveries"
)


def _alert_or_404(alert_id: int) -> Alert:
    alert = visible_alert(db_session(), current_principal(), alert_id)
    if alert is None:
        raise ApiError(404, f"no alert with id {alert_id}")
    return alert


def _detail(alert: Alert) -> Extended:
    deliveries = [
        Extended(delivery, webhook_name=name) for delivery, name in alert_deliveries(db_session(), alert)
    ]
    return Extended(alert, deliveries=deliveries)


@blp.route("/alerts", methods=["GET"])
@blp.arguments(AlertQuerySchema, location="query", as_kwargs=True)
@blp.response(200, AlertPageSchema)
@permission(Permission.ALERT_READ)
def list_alerts(**filters: Any) -> Any:
    """Alerts of the caller's units, newest first (filters: state, severity, unit subtree, device, kind)."""
    return search_alerts(db_session(), current_principal(), filters).as_dict()


@blp.route(f"/alerts/<{ID}:alert_id>", methods=["GET"])
@blp.response(200, AlertDetailSchema)
@permission(Permission.ALERT_READ)
def get_alert(alert_id: int) -> Any:
    """One alert, with each webhook delivery and every attempt made."""
    return _detail(_alert_or_404(alert_id))


@blp.route(f"/alerts/<{ID}:alert_id>/acknowledge", methods=["POST"])
@blp.arguments(AcknowledgeSchema)
@blp.response(200, AlertDetailSchema)
@permission(Permission.ALERT_ACK)
def acknowledge(body: dict[str, Any], alert_id: int) -> Any:
    """Acknowledge the alert, saying what was done (recorded in the audit log). Once only: 409 after."""
    principal = current_principal()
    alert = _alert_or_404(alert_id)
    comment = body["comment"].strip()
    if not comment:
        raise field_error("comment", "say what was done about the alert")
    session = db_session()
    try:
        acknowledge_alert(session, alert, principal.actor, comment)
    except AlertStateError as exc:
        raise ApiError(409, str(exc)) from exc
    session.commit()
    return _detail(alert)
