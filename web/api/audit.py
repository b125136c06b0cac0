"""The audit trail: search, export, verify."""

from __future__ import annotations

from typing import Any

from flask import Response

from mdm.doors.appctx import db_session
from mdm.ground.audit import record_event, verify_chain
from mdm.ground.clock import now
from web.api.auth import current_principal
from web.api.base import ApiBlueprint, permission
from web.api.schemas import AuditExportQuerySchema, AuditPageSchema, AuditQuerySchema, ChainReportSchema
from web.audit_export import CONTENT_TYPES, reader_factory, stream_export
from web.queries import audit_statement, search_audit
from web.rbac import Permission

blp = ApiBlueprint("audit", __name__, url_prefix="/api/v1", description="Audit trail")


@blp.route("/audit/events", methods=["GET"])
@blp.arguments(AuditQuerySchema, location="query", as_kwargs=True)
@blp.response(200, AuditPageSchema)
@permission(Permission.AUDIT_READ)
def list_events(**filters: Any) -> Any:
    """Events, newest first. `action` ending in '.' matches a prefix (e.g. `auth.`)."""
    return search_audit(db_session(), current_principal(), filters).as_dict()


_EXPORT_DOC = {
    "responses": {
        "200": {
            "description": "the events in chain order, one per line (JSONL) or row (CSV)",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    }
}


@blp.route("/audit/events/export", methods=["GET"])
@blp.arguments(AuditExportQuerySchema, location="query", as_kwargs=True)
@blp.doc(**_EXPORT_DOC)
@permission(Permission.AUDIT_EXPORT)
def export_events(**filters: Any) -> Response:
    """Export matching events as JSON Lines or CSV (the export itself is audited)."""
    principal = current_principal()
    session = db_session()
    fmt = filters.pop("format")
    for key in ("page", "per_page"):
        filters.pop(key, None)
    record_event(
        session,
        principal.actor,
        "audit.exported",
        "audit",
        None,
        {"format": fmt, "filters": {k: str(v) for k, v in filters.items()}},
    )
    session.commit()
    stmt = audit_statement(principal, filters)
    filename = f"hikeshi-audit-{now():%Y%m%dT%H%M%SZ}.{fmt}"
    return Response(
        stream_export(reader_factory(), stmt, fmt),
        content_type=CONTENT_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@blp.route("/audit/verify", methods=["GET"])
@blp.response(200, ChainReportSchema)
@permission(Permission.AUDIT_VERIFY)
def verify() -> Any:
    """Walk the hash chain; report the first broken row (by id and seq), if any."""
    return verify_chain(db_session())
