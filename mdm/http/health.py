"""/healthz (the process is alive) and /readyz (it can do its job), and the 503 a request gets
while the database is unreachable."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mdm import clock
from mdm.appctx import hikeshi
from mdm.backup.schedule import backup_status
from mdm.db import migration_state
from mdm.health import service_health
from mdm.push.certificates import active_push_certificate

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

RETRY_AFTER_SECONDS = 30
# Without these the node cannot serve devices: only they make /readyz answer 503, so a load
# balancer never takes every node out because APNs or the scheduler is down (devices would then
# miss the very commands the degraded mode keeps for their next check-in). `?strict=1` answers
# 503 on any failing check, for monitors that read only the status code.
SERVING_CHECKS = ("database", "migrations")
# A scheduler that has not reported for this long is considered stopped.
SCHEDULER_STALE = timedelta(minutes=3)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, dict[str, Any]] = {}
    ext = hikeshi()
    try:
        with ext.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
        current, heads = migration_state(ext.engine)
        checks["migrations"] = {"ok": current == heads, "current": sorted(current), "required": sorted(heads)}
        with ext.session_factory() as session:
            checks["push_certificate"] = _push_certificate_check(session)
            checks["apns"] = _service_check(session, "apns", stale_after=None)
            checks["scheduler"] = _service_check(session, "scheduler", stale_after=SCHEDULER_STALE)
            if ext.settings.mqtt_url:
                checks["mqtt"] = _service_check(session, "mqtt", stale_after=None)
            # Information for operators: a failing backup must not take a node out of service.
            backup = backup_status(session, ext.settings)
            checks["backup"] = {**backup, "ok": True, "healthy": backup["ok"]}
    except (OperationalError, PoolTimeout, DBAPIError) as exc:
        log.warning("readiness: database unreachable: %s", exc)
        checks["database"] = {"ok": False, "detail": "database unreachable"}
    serving = all(checks.get(name, {}).get("ok", False) for name in SERVING_CHECKS)
    healthy = all(check["ok"] for check in checks.values())
    status = "ready" if healthy else "degraded" if serving else "not ready"
    strict = request.args.get("strict") in ("1", "true")
    code = 200 if (healthy or (serving and not strict)) else 503
    return jsonify(status=status, checks=checks), code


def _push_certificate_check(session: Any) -> dict[str, Any]:
    cert = active_push_certificate(session)
    if cert is None:
        return {"ok": False, "detail": "no APNs push certificate installed"}
    days = (cert.not_after - clock.now()).days
    return {"ok": cert.not_after > clock.now(), "topic": cert.topic, "days_left": days}


def _service_check(session: Any, name: str, *, stale_after: timedelta | None) -> dict[str, Any]:
    row = service_health(session, name)
    if row is None:
        return {"ok": True, "state": "no report yet"}
    if stale_after is not None and clock.now() - row.updated_at > stale_after:
        return {"ok": False, "state": "silent", "last_report": row.updated_at.isoformat()}
    return {
        "ok": row.healthy,
        "state": "up" if row.healthy else "down",
        "since": row.since.isoformat(),
        "detail": row.detail,
    }


def database_unavailable(exc: Exception) -> Response:
    """Any request that hits an unreachable database: 503 with Retry-After; the transaction
    rolled back with the request, so nothing is half-written."""
    log.error("database unavailable: %s", exc)
    response = Response("database unavailable, retry later\n", status=503, content_type="text/plain")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    for error in (OperationalError, PoolTimeout):
        app.register_error_handler(error, database_unavailable)
