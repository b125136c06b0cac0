"""Refused attempts go into the audit log: a request for something outside the person's scope
(answered 404, as if it did not exist), an action their role lacks (403), and a forged or
expired form (CSRF check failed).

The refusal is written in the request's own session after rolling back whatever the refused
request had started, so nothing of the refused change is kept and the event joins the hash chain
like any other. A request for an id that exists nowhere is a plain 404 and is not recorded:
only what really belongs to another unit says "someone looked where they may not".
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g, request
from sqlalchemy.exc import SQLAlchemyError

from mdm.doors.appctx import db_session
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Device, EnrollmentToken, OrgUnit, User
from mdm.ground.models.incident import Incident

log = logging.getLogger(__name__)

OUT_OF_SCOPE = "access.out_of_scope"
FORBIDDEN = "access.forbidden"
CSRF_REJECTED = "security.csrf_rejected"

# URL arguments that name something with a unit, and how to find that unit.
_SCOPED_ARGS: dict[str, tuple[str, Any]] = {
    "device_id": ("device", Device),
    "incident_id": ("incident", Incident),
    "unit_id": ("org_unit", OrgUnit),
    "user_id": ("user", User),
}


def _unit_of(kind: str, row: Any) -> int | None:
    if kind == "org_unit":
        return int(row.id)
    return row.org_unit_id


def _out_of_scope_target(principal: Any) -> tuple[str, int] | None:
    """The (kind, id) of a URL argument that exists but lies outside the principal's scope."""
    args = request.view_args or {}
    session = db_session()
    for name, (kind, model) in _SCOPED_ARGS.items():
        ident = args.get(name)
        if not isinstance(ident, int):
            continue
        row = session.get(model, ident)
        if row is None:
            continue
        units = {_unit_of(kind, row)}
        if kind == "incident":
            units.add(row.device.org_unit_id)  # visible by the device's unit now, too
        if not any(principal.sees_unit(u) for u in units if u is not None):
            return kind, ident
    # Console token pages name an enrollment token as token_id.
    if request.path.startswith("/console/enrollment-tokens/") and isinstance(args.get("token_id"), int):
        token = session.get(EnrollmentToken, args["token_id"])
        if token is not None and not principal.sees_unit(token.org_unit_id):
            return "enrollment_token", token.id
    return None


def _actor() -> Actor:
    principal = g.get("principal")
    if principal is not None:
        return principal.actor
    user = g.get("user")
    if user is not None:
        return Actor(f"user:{user.username}", user.role, request.remote_addr, user_id=user.id)
    return Actor("anonymous", "anonymous", request.remote_addr)


def _where() -> dict[str, Any]:
    return {"method": request.method, "path": request.path, "endpoint": request.endpoint or ""}


def _record(
    action: str, target_type: str | None, target_id: int | str | None, details: dict[str, Any]
) -> None:
    if g.get("refusal_recorded"):
        return
    g.refusal_recorded = True
    session = db_session()
    try:
        session.rollback()
        record_event(session, _actor(), action, target_type, target_id, details)
        session.commit()
    except SQLAlchemyError:
        # The refusal itself stands; a database that cannot take the event must not turn a
        # 403/404 into a 500. The log keeps what the chain could not.
        session.rollback()
        log.exception("could not audit refused request %s %s", request.method, request.path)


def record_refusal(status: int) -> None:
    """Called by the error handler for console and API answers 400, 403 and 404."""
    reason = g.get("csrf_refused")
    if status == 400 and reason:
        _record(CSRF_REJECTED, None, None, {**_where(), "reason": reason})
        return
    principal = g.get("principal")
    if principal is None:
        return
    if status == 403:
        _record(FORBIDDEN, None, None, {**_where(), "role": principal.role})
    elif status == 404 and principal.scoped:
        target = _out_of_scope_target(principal)
        if target is not None:
            _record(OUT_OF_SCOPE, target[0], target[1], _where())
