"""The scheduler's AMAPI jobs: the sweep of commands no process sent after its commit
(`amapi_send`), the pull of the enterprise's Pub/Sub notifications with a devices.list reconcile
(`amapi_pull`, every HIKESHI_AMAPI_PULL_SECONDS), and the poll of unsettled operations
(`amapi_operations`). Without a bound enterprise each does nothing and says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.models import AmapiEnterprise, JobRun
from mdm.roots.scheduler.context import JobContext
from mdm.services.amapi.commands import send_due
from mdm.services.amapi.notifications import pull, reconcile_enterprise_devices
from mdm.services.amapi.operations import poll_operations

# The devices.list reconcile runs once in this many pulls' time (it reads every device).
RECONCILE_EVERY = timedelta(hours=1)


def _client(ctx: JobContext) -> Any:
    return ctx.amapi_client() if ctx.amapi_client is not None else None


def _enterprise(ctx: JobContext) -> tuple[str | None, str | None]:
    with transaction(ctx.factory) as session:
        row = session.scalars(select(AmapiEnterprise).order_by(AmapiEnterprise.id).limit(1)).first()
        if row is None:
            return None, None
        return row.enterprise_name, row.pubsub_subscription


def _last_ok(ctx: JobContext, job: str, detail: str | None = None) -> Any:
    with transaction(ctx.factory) as session:
        runs = session.scalars(
            select(JobRun)
            .where(JobRun.job == job, JobRun.outcome == "ok")
            .order_by(JobRun.started_at.desc())
            .limit(50)
        )
        for run in runs:
            if detail is None or (run.details or {}).get(detail):
                return run.started_at
    return None


def _closed(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        close()


def amapi_send(ctx: JobContext) -> dict[str, Any]:
    client = _client(ctx)
    if client is None:
        return {"skipped": "no enterprise bound"}
    try:
        return send_due(ctx.factory, client, ctx.commands).as_dict()
    finally:
        _closed(client)


def amapi_operations(ctx: JobContext) -> dict[str, Any]:
    client = _client(ctx)
    if client is None:
        return {"skipped": "no enterprise bound"}
    try:
        return poll_operations(ctx.factory, client, ctx.commands)
    finally:
        _closed(client)


def amapi_pull(ctx: JobContext) -> dict[str, Any]:
    """Pull when HIKESHI_AMAPI_PULL_SECONDS have passed since the last pull (the job is asked
    every tick); reconcile with devices.list once an hour."""
    last = _last_ok(ctx, "amapi_pull", "pulled")
    now = clock.now()
    if last is not None and now - last < timedelta(seconds=ctx.settings.amapi_pull_seconds):
        return {"skipped": "not due"}
    enterprise, subscription = _enterprise(ctx)
    if enterprise is None:
        return {"skipped": "no enterprise bound"}
    client = _client(ctx)
    if client is None:
        return {"skipped": "no service account stored"}
    try:
        result: dict[str, Any] = {"pulled": True}
        if subscription:
            result.update(pull(ctx.factory, client, subscription, ctx.commands).as_dict())
        else:
            result["subscription"] = "none: notifications are not pulled; the reconcile and the poll cover"
        reconciled = _last_ok(ctx, "amapi_pull", "reconciled")
        if reconciled is None or now - reconciled >= RECONCILE_EVERY:
            result["reconciled"] = reconcile_enterprise_devices(ctx.factory, client, enterprise)
        return result
    finally:
        _closed(client)
