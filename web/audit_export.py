"""Audit export as JSON Lines, JSON or CSV, streamed in batches in chain order.

Each exported event carries its hash and the previous hash, so an export can be re-verified
outside Hikeshi (mdm.ground.audit.compute_hash documents the hashed form). The console's export adds
what a person reads (the action's label, the actor's name) as extra fields after the hashed ones.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
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
CONTENT_TYPES = {
    "jsonl": "application/x-ndjson; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json; charset=utf-8",
}
READABLE_COLUMNS = ("action_label", "actor_name")
# Raw actors of one batch -> the names shown for them (looked up in the export's own session).
ActorNamer = Callable[[Session, set[str]], dict[str, str]]


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


def stream_export(
    factory: Callable[[], Session],
    stmt: Any,
    fmt: str,
    *,
    action_labels: Mapping[str, str] | None = None,
    actor_names: ActorNamer | None = None,
    excel: bool = False,
) -> Iterator[str]:
    """Lines of the export, read in a session of its own that lives as long as the stream
    (the request's session has committed and must not hold the database while a client reads).

    With `action_labels` and `actor_names`, each event also carries its readable label and actor
    name; `excel` starts a CSV with the byte-order mark that spreadsheet programs need for UTF-8."""
    session = factory()
    try:
        readable = (action_labels, actor_names) if action_labels is not None and actor_names else None
        yield from export_lines(session, stmt, fmt, readable=readable, excel=excel)
    finally:
        session.close()


def _records(
    session: Session, rows: list[AuditEvent], readable: tuple[Mapping[str, str], ActorNamer] | None
) -> list[dict[str, Any]]:
    records = [event_record(e) for e in rows]
    if readable is not None:
        labels, namer = readable
        names = namer(session, {e.actor for e in rows})
        for record in records:
            record["action_label"] = labels.get(record["action"], record["action"])
            record["actor_name"] = names.get(record["actor"], record["actor"])
    return records


def export_lines(
    session: Session,
    stmt: Any,
    fmt: str,
    *,
    readable: tuple[Mapping[str, str], ActorNamer] | None = None,
    excel: bool = False,
) -> Iterator[str]:
    columns = COLUMNS + (READABLE_COLUMNS if readable is not None else ())
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        yield ("\ufeff" if excel else "") + buffer.getvalue()
        for rows in _batches(session, stmt):
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for record in _records(session, rows, readable):
                record["details"] = json.dumps(record["details"], ensure_ascii=False, sort_keys=True)
                writer.writerow([_csv_safe(record[c]) for c in columns])
            yield buffer.getvalue()
        return
    if fmt == "json":
        # One JSON array, still written batch by batch.
        yield "["
        first = True
        for rows in _batches(session, stmt):
            for record in _records(session, rows, readable):
                yield ("\n" if first else ",\n") + json.dumps(record, ensure_ascii=False)
                first = False
        yield "\n]\n"
        return
    for rows in _batches(session, stmt):
        yield "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records(session, rows, readable))
