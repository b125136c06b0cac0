"""Audit export as JSON Lines or CSV, streamed in batches in chain order.

Each exported event carries its hash and the previous hash, so an export can be re-verified
outside Hikeshi (mdm.ground.audit.compute_hash documents the hashed form).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground.db import make_session_factory, read_mostly
from mdm.ground.models import AuditEvent

COLUMNS = (
    "seq",
    "occurred_at",
    "actor",
    "actor_role",
    "source_ip",
    "action",
    "target_type",
    "target_id",
    "details",
    "prev_hash",
    "hash",
)
BATCH = 1000
CONTENT_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def event_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor,
        "actor_role": event.actor_role,
        "source_ip": event.source_ip,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _batches(session: Session, stmt: Any) -> Iterator[list[AuditEvent]]:
    last = 0
    while True:
        # By id, the order events were written: an event not yet sealed has no seq (mdm.ground.audit).
        rows = list(session.scalars(stmt.where(AuditEvent.id > last).order_by(AuditEvent.id).limit(BATCH)))
        if not rows:
            return
        yield rows
        last = rows[-1].id
        session.expunge_all()


def _csv_safe(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to spreadsheet programs: quote it as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def reader_factory() -> Callable[[], Session]:
    """Sessions whose SQLite transactions start deferred: a long export never blocks writers."""
    from mdm.doors.appctx import hikeshi

    return make_session_factory(read_mostly(hikeshi().engine))


def stream_export(factory: Callable[[], Session], stmt: Any, fmt: str) -> Iterator[str]:
    """Lines of the export, read in a session of its own that lives as long as the stream
    (the request's session has committed and must not hold the database while a client reads)."""
    session = factory()
    try:
        yield from export_lines(session, stmt, fmt)
    finally:
        session.close()


def export_lines(session: Session, stmt: Any, fmt: str) -> Iterator[str]:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        yield buffer.getvalue()
        for rows in _batches(session, stmt):
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for event in rows:
                record = event_record(event)
                record["details"] = json.dumps(record["details"], ensure_ascii=False, sort_keys=True)
                writer.writerow([_csv_safe(record[c]) for c in COLUMNS])
            yield buffer.getvalue()
        return
    for rows in _batches(session, stmt):
        yield "".join(json.dumps(event_record(e), ensure_ascii=False) + "\n" for e in rows)
