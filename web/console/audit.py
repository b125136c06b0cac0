"""The audit log: filter, export, and verify the hash chain."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, render_template, request

from mdm.doors.appctx import db_session
from mdm.ground import clock
from mdm.ground.audit import record_event, verify_chain
from web.audit_export import CONTENT_TYPES, reader_factory, stream_export
from web.console.blueprint import bp
from web.console.forms import AuditFilterForm, load_form
from web.console.guard import current_principal, needs
from web.queries import audit_statement, search_audit
from web.rbac import Permission


def _filters() -> tuple[dict[str, Any], dict[str, list[str]]]:
    data, errors = load_form(AuditFilterForm(), request.args)
    return ({} if errors else data), errors


def _page(report: Any = None) -> str:
    filters, errors = _filters()
    result = search_audit(db_session(), current_principal(), {**filters, "per_page": 100})
    query = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        "console/audit.html", result=result, errors=errors, filters=request.args, query=query, report=report
    )


@bp.route("/audit")
@needs(Permission.AUDIT_READ)
def audit() -> str:
    return _page()


@bp.route("/audit/verify", methods=["POST"])
@needs(Permission.AUDIT_VERIFY)
def audit_verify() -> str:
    """Walk the whole chain and name the first broken row, if any."""
    return _page(report=verify_chain(db_session()))


@bp.route("/audit/export")
@needs(Permission.AUDIT_EXPORT)
def audit_export() -> Response:
    fmt = request.args.get("format", "jsonl")
    if fmt not in CONTENT_TYPES:
        abort(400)
    filters, errors = _filters()
    if errors:
        abort(400)
    filters.pop("page", None)
    principal = current_principal()
    session = db_session()
    record_event(
        session,
        principal.actor,
        "audit.exported",
        "audit",
        None,
        {"format": fmt, "filters": {k: str(v) for k, v in filters.items()}},
    )
    session.commit()
    filename = f"hikeshi-audit-{clock.now():%Y%m%dT%H%M%SZ}.{fmt}"
    return Response(
        stream_export(reader_factory(), audit_statement(principal, filters), fmt),
        content_type=CONTENT_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
