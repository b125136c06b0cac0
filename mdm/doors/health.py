"""/healthz (the process is alive) and /readyz (it can do its job), and the 503 a request gets
while the database is unreachable."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy import Engine, insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mdm.doors.appctx import hikeshi
from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import migration_state
from mdm.ground.health import service_health
from mdm.ground.models.health import ServiceHealth
from mdm.ground.push.certificates import active_push_certificate
from mdm.services.backup.schedule import backup_status

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

RETRY_AFTER_SECONDS = 30
# Without these the node cannot serve devices: only they make /readyz answer 503, so a load
# balancer never takes every node out because APNs or the scheduler is down (devices would then
# miss the very commands the degraded mode keeps for their next check-in). `?strict=1` answers
# 503 on any failing check, for monitors that read only the status code.
SERVING_CHECKS = ("database", "disk", "migrations")
# A scheduler that has not reported for this long is considered stopped.
SCHEDULER_STALE = timedelta(minutes=3)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, dict[str, Any]] = {}
    ext = hikeshi()
    checks["disk"] = disk_check(ext.settings)
    try:
        checks["database"] = write_probe(ext.engine)
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
    failing = sorted(name for name, check in checks.items() if not check["ok"])
    return jsonify(status=status, failing=failing, checks=checks), code


def write_probe(engine: Engine) -> dict[str, Any]:
    """Prove the node can write, not only read: a row written and rolled back.

    `SELECT 1` answers on a full disk, a read-only file system, a read-only replica or role; a
    write does not. Nothing stays behind (the transaction is rolled back)."""
    probe = f"readyz:{os.getpid()}"[:32]
    with engine.connect() as conn:
        try:
            with conn.begin() as trans:  # SQLite takes its write lock here (BEGIN IMMEDIATE)
                conn.execute(
                    insert(ServiceHealth).values(
                        name=probe,
                        healthy=True,
                        since=clock.now(),
                        detail="write probe",
                        updated_at=clock.now(),
                    )
                )
                trans.rollback()
        except DBAPIError as exc:
            if isinstance(exc, OperationalError) and _unreachable(exc):
                raise
            log.warning("readiness: the database refuses writes: %s", exc)
            return {"ok": False, "detail": f"cannot write: {_first_line(exc.orig)}"}
    return {"ok": True, "writable": True}


def disk_check(settings: Settings) -> dict[str, Any]:
    """The instance folder (SQLite database, secrets, logs) accepts a file and has room."""
    folder = Path(settings.instance_path)
    minimum = settings.readyz_min_free_mb * 1024 * 1024
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".readyz-"):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return {"ok": False, "detail": f"instance folder not writable: {exc.strerror or exc}"}
    free_mb = free // (1024 * 1024)
    if free < minimum:
        return {
            "ok": False,
            "detail": f"{free_mb} MB free, below {settings.readyz_min_free_mb} MB",
            "free_mb": free_mb,
        }
    return {"ok": True, "free_mb": free_mb}


def _unreachable(exc: OperationalError) -> bool:
    """No connection at all (as opposed to a database that answers but refuses the write)."""
    return bool(exc.connection_invalidated) or "connect" in str(exc.orig).lower()


def _first_line(error: object) -> str:
    return (str(error).strip().splitlines() or ["?"])[0][:200]


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
