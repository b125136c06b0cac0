"""The audit log for an auditor: Japanese labels, people's names, details as text; filters by date
range, actor, device, incident and action; a per-incident view; export of exactly the filtered
view (CSV for a spreadsheet, JSON, JSON Lines); and a button that verifies the hash chain."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from flask import Response, abort, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError, fields, validate, validates_schema
from sqlalchemy import String, and_, cast, or_, select
from sqlalchemy.orm import Session

from commands.incidents.views import visible_to
from mdm.doors.appctx import db_session
from mdm.ground import clock
from mdm.ground.audit import record_event, verify_chain
from mdm.ground.models import AuditEvent, Command, Device
from mdm.ground.models.incident import Incident, IncidentCommand
from web.api.schemas import Text
from web.audit_export import CONTENT_TYPES, reader_factory, stream_export
from web.console.audit_labels import (
    GROUPS,
    action_label,
    actor_names,
    device_names,
    known_actions,
    readable_details,
    role_text,
)
from web.console.blueprint import bp
from web.console.forms import FormSchema, load_form
from web.console.guard import current_principal, needs
from web.queries import AUDIT_COUNT_LIMIT, audit_scope, audit_statement, capped_count, device_scope
from web.rbac import Permission, Principal

PER_PAGE = 100
# The auditor's days are Japanese days: a date range runs from 00:00 to 24:00 JST.
JST = timezone(timedelta(hours=9), "JST")
# How many distinct actors the actor filter offers (devices and agents can be many).
ACTOR_CHOICES = 300


class AuditLogFilter(FormSchema):
    since = fields.Date(metadata={"description": "first day (JST), inclusive"})
    until = fields.Date(metadata={"description": "last day (JST), inclusive"})
    actor = Text(validate=validate.Length(max=255))
    device = Text(validate=validate.Length(max=128))
    incident = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
    action = Text(validate=validate.Length(max=64))
    target_type = Text(validate=validate.Length(max=32))
    target_id = Text(validate=validate.Length(max=128))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))

    @validates_schema
    def _range(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError(_("The first day is after the last day."), "until")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=JST).astimezone(UTC)


def _devices_matching(session: Session, principal: Principal, text: str) -> list[int]:
    """Devices in scope named by id, asset tag, serial number or name (exact, then substring)."""
    scope = device_scope(principal)
    exact = [Device.asset_tag == text, Device.serial_number == text, Device.device_name == text]
    if text.isdigit():
        exact.append(Device.id == int(text))
    ids = list(session.scalars(select(Device.id).where(or_(*exact), scope)))
    if not ids:
        ids = list(
            session.scalars(
                select(Device.id).where(Device.device_name.contains(text, autoescape=True), scope).limit(50)
            )
        )
    return ids


def _about_devices(device_ids: list[int]) -> Any:
    """Events about these devices: the device itself, its commands, its incidents."""
    as_text = [str(i) for i in device_ids]
    return or_(
        and_(AuditEvent.target_type == "device", AuditEvent.target_id.in_(as_text)),
        and_(
            AuditEvent.target_type == "command",
            AuditEvent.target_id.in_(select(Command.uuid).where(Command.device_id.in_(device_ids))),
        ),
        and_(
            AuditEvent.target_type == "incident",
            AuditEvent.target_id.in_(
                select(cast(Incident.id, String)).where(Incident.device_id.in_(device_ids))
            ),
        ),
    )


def _about_incident(incident_id: int) -> Any:
    """Events of an incident: its own steps and the commands sent for it."""
    commands = (
        select(Command.uuid)
        .join(IncidentCommand, IncidentCommand.command_id == Command.id)
        .where(IncidentCommand.incident_id == incident_id)
    )
    return or_(
        and_(AuditEvent.target_type == "incident", AuditEvent.target_id == str(incident_id)),
        and_(AuditEvent.target_type == "command", AuditEvent.target_id.in_(commands)),
    )


def _statement(session: Session, principal: Principal, filters: dict[str, Any]) -> Any:
    base = {k: filters[k] for k in ("action", "actor", "target_type", "target_id") if filters.get(k)}
    if filters.get("since"):
        base["since"] = _day_start(filters["since"])
    stmt = audit_statement(principal, base)
    if filters.get("until"):
        stmt = stmt.where(AuditEvent.occurred_at < _day_start(filters["until"] + timedelta(days=1)))
    if filters.get("device"):
        stmt = stmt.where(_about_devices(_devices_matching(session, principal, filters["device"])))
    if filters.get("incident"):
        stmt = stmt.where(_about_incident(filters["incident"]))
    return stmt


def _filters() -> tuple[dict[str, Any], dict[str, list[str]]]:
    data, errors = load_form(AuditLogFilter(), request.args)
    return ({} if errors else data), errors


def _actor_choices(session: Session, principal: Principal) -> list[tuple[str, str]]:
    raws = list(
        session.scalars(
            select(AuditEvent.actor)
            .distinct()
            .where(audit_scope(principal))
            .order_by(AuditEvent.actor)
            .limit(ACTOR_CHOICES)
        )
    )
    names = actor_names(session, raws)
    return sorted(((raw, names[raw].shown) for raw in raws), key=lambda pair: pair[1])


def _page(*, report: Any = None, incident: Incident | None = None) -> str:
    session = db_session()
    principal = current_principal()
    filters, errors = _filters()
    if incident is not None:
        filters["incident"] = incident.id
    stmt = _statement(session, principal, filters).order_by(AuditEvent.seq.desc())
    page = filters.get("page", 1)
    total, total_capped = capped_count(session, stmt.with_only_columns(AuditEvent.id), AUDIT_COUNT_LIMIT)
    events = list(session.scalars(stmt.limit(PER_PAGE).offset((page - 1) * PER_PAGE)))
    names = actor_names(session, {e.actor for e in events})
    devices = device_names(session, events)
    rows = [
        {
            "event": e,
            "label": action_label(e.action),
            "actor": names[e.actor],
            "details": readable_details(e.details, devices),
            "target": _target(e, devices),
        }
        for e in events
    ]
    query: dict[str, Any] = {k: v for k, v in request.args.items() if k != "page" and v}
    export_query = dict(query, incident=incident.id) if incident is not None else query
    return render_template(
        "console/audit.html",
        rows=rows,
        total=total,
        total_capped=total_capped,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        errors=errors,
        filters=request.args,
        query=query,
        export_query=export_query,
        report=report,
        incident=incident,
        actions=sorted(known_actions().items(), key=lambda pair: pair[0]),
        groups=[(prefix, str(label)) for prefix, label in GROUPS.items()],
        actors=_actor_choices(session, principal),
        role_label=role_text,
        page_url=lambda n: _page_url(n, query, incident),
    )


def _page_url(page: int, query: dict[str, Any], incident: Incident | None) -> str:
    if incident is not None:
        return url_for("console.audit_incident", incident_id=incident.id, page=page, **query)
    return url_for("console.audit", page=page, **query)


def _target(event: AuditEvent, devices: dict[int, str]) -> dict[str, Any]:
    """What the event is about, as a link where the console has a page for it."""
    kind, ident = event.target_type or "", event.target_id or ""
    labels = {
        "device": _("Device"),
        "incident": _("Incident"),
        "command": _("Command"),
        "org_unit": _("Unit"),
        "user": _("User"),
        "profile": _("Profile"),
        "enrollment_token": _("Enrollment token"),
        "api_token": _("API token"),
        "audit": _("Audit log"),
        "webhook": _("Webhook"),
        "alert": _("Alert"),
        "certificate_authority": _("Certificate authority"),
        "push_certificate": _("Push certificate"),
        "continuity_plan": _("Continuity plan"),
    }
    text = f"{labels.get(kind, kind)} #{ident}" if ident else str(labels.get(kind, kind))
    href = None
    if kind == "device" and ident.isdigit():
        text = f"{labels['device']} {devices.get(int(ident), '#' + ident)}"
        href = url_for("console.device", device_id=int(ident))
    elif kind == "incident" and ident.isdigit():
        href = url_for("console.audit_incident", incident_id=int(ident))
    elif kind == "org_unit" and ident.isdigit():
        href = url_for("console.org_unit", unit_id=int(ident))
    return {"text": text, "href": href}


@bp.route("/audit")
@needs(Permission.AUDIT_READ)
def audit() -> str:
    return _page()


@bp.route("/audit/incidents/<int:incident_id>")
@needs(Permission.AUDIT_READ)
def audit_incident(incident_id: int) -> str:
    """Everything recorded about one incident, oldest questions answered in one place."""
    incident = db_session().get(Incident, incident_id)
    if incident is None or not visible_to(incident, current_principal().scope_unit_ids):
        abort(404)
    return _page(incident=incident)


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
    stmt = _statement(session, principal, filters)
    session.commit()
    labels = known_actions()
    filename = f"hikeshi-audit-{clock.now():%Y%m%dT%H%M%SZ}.{fmt}"
    return Response(
        stream_with_context(
            stream_export(
                reader_factory(),
                stmt,
                fmt,
                action_labels=labels,
                actor_names=lambda s, raws: {raw: name.shown for raw, name in actor_names(s, raws).items()},
                # Excel opens a CSV as UTF-8 only with the byte-order mark; without it, mojibake.
                excel=True,
            )
        ),
        content_type=CONTENT_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
